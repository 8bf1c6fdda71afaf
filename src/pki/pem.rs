//! PEM in and out through buffers that are wiped on drop, since most of what passes here
//! is private key material.

use pem_rfc7468::LineEnding;
use zeroize::{Zeroize, Zeroizing};

/// One decoded PEM block.
pub(crate) struct Block {
    pub label: String,
    pub der: Zeroizing<Vec<u8>>,
}

/// Decodes exactly one PEM block (RFC 7468, as kubeadm and openssl write them).
pub(crate) fn decode(pem: &[u8]) -> Result<Block, String> {
    // The decoded body is never longer than its base64 text.
    let mut buf = Zeroizing::new(vec![0u8; pem.len()]);
    let (label, len) = match pem_rfc7468::decode(pem, &mut buf) {
        Ok((label, der)) => (label.to_owned(), der.len()),
        Err(e) => return Err(format!("not a valid PEM block ({e})")),
    };
    buf.truncate(len);
    Ok(Block { label, der: buf })
}

/// Decodes one PEM block and checks its label.
pub(crate) fn decode_labelled(pem: &[u8], expected: &[&str]) -> Result<Block, String> {
    let block = decode(pem)?;
    if expected.contains(&block.label.as_str()) {
        Ok(block)
    } else {
        Err(format!(
            "holds a PEM \"{}\" block where {} was expected",
            block.label,
            expected
                .iter()
                .map(|l| format!("\"{l}\""))
                .collect::<Vec<_>>()
                .join(" or ")
        ))
    }
}

/// Encodes `der` as one PEM block with LF line endings.
pub(crate) fn encode(label: &str, der: &[u8]) -> Result<Zeroizing<String>, String> {
    let fail = |e: pem_rfc7468::Error| format!("cannot PEM-encode a {label} ({e})");
    let len = pem_rfc7468::encoded_len(label, LineEnding::LF, der).map_err(fail)?;
    let mut buf = Zeroizing::new(vec![0u8; len]);
    let used = pem_rfc7468::encode(label, LineEnding::LF, der, &mut buf)
        .map_err(fail)?
        .len();
    buf.truncate(used);
    into_text(buf).map_err(|()| format!("cannot PEM-encode a {label} (non-ASCII output)"))
}

/// Turns bytes into text without leaving an unwiped copy behind.
pub(crate) fn into_text(mut bytes: Zeroizing<Vec<u8>>) -> Result<Zeroizing<String>, ()> {
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_block_decodes_to_the_same_bytes_and_label() {
        let der = (0u8..=200).collect::<Vec<_>>();
        let text = encode("RSA PRIVATE KEY", &der).unwrap();
        assert!(text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(text.ends_with("-----END RSA PRIVATE KEY-----\n"));
        assert!(text.lines().all(|l| l.len() <= 64));
        let block = decode(text.as_bytes()).unwrap();
        assert_eq!(block.label, "RSA PRIVATE KEY");
        assert_eq!(*block.der, der);
    }

    #[test]
    fn damaged_base64_is_refused() {
        let text = encode("CERTIFICATE", &[7u8; 90]).unwrap();
        let broken = text.replacen("BwcH", "B!cH", 1);
        assert!(decode(broken.as_bytes()).is_err());
    }

    #[test]
    fn unexpected_label_is_named_in_the_error() {
        let text = encode("PUBLIC KEY", &[1u8; 10]).unwrap();
        let err = decode_labelled(text.as_bytes(), &["CERTIFICATE"])
            .err()
            .unwrap();
        assert!(err.contains("\"PUBLIC KEY\""), "{err}");
        assert!(err.contains("\"CERTIFICATE\""), "{err}");
    }

    #[test]
    fn non_utf8_bytes_are_not_text() {
        assert!(into_text(Zeroizing::new(vec![0xff, 0xfe])).is_err());
        assert_eq!(
            into_text(Zeroizing::new(b"ok".to_vec())).unwrap().as_str(),
            "ok"
        );
    }
}
