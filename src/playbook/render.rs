//! minijinja rendering: strict undefined (a typo is an error, not an empty string), no
//! auto-escaping (we render YAML and shell, not HTML).

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

#[derive(Clone)]
pub struct Renderer {
    env: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    /// A renderer whose templates can `{% include %}` other files under the playbooks root.
    pub fn with_playbooks(playbooks: super::Playbooks) -> Self {
        let mut r = Self::new();
        r.env.set_loader(move |name| match playbooks.read(name) {
            Ok(text) => Ok(Some(text)),
            Err(super::PlaybookError::NotFound { .. }) => Ok(None),
            Err(e) => Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                e.to_string(),
            )),
        });
        r
    }

    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // Config files keep their final newline; blocks don't leave blank lines behind.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        // Shell-quote a value: `{{ path | quote }}` — quoting belongs to shlex, not to templates.
        env.add_filter("quote", |v: Value| -> String {
            let s = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            shlex::try_quote(&s)
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| "''".into())
        });
        env.add_filter("to_yaml", |v: Value| -> Result<String, minijinja::Error> {
            serde_saphyr::to_string(&v).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })
        });
        Renderer { env }
    }

    pub fn render(
        &self,
        name: &str,
        source: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, String> {
        let ctx = Value::from(minijinja::value::Serde(ctx));
        self.env
            .render_named_str(name, source, ctx)
            .map_err(|e| describe(name, &e))
    }

    pub fn eval_bool(&self, expr: &str, ctx: &serde_json::Value) -> Result<bool, String> {
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| format!("expression `{expr}`: {e}"))?;
        compiled
            .eval(Value::from(minijinja::value::Serde(ctx)))
            .map(|v| v.is_true())
            .map_err(|e| format!("expression `{expr}`: {e}"))
    }
}

fn describe(name: &str, e: &minijinja::Error) -> String {
    let mut msg = format!("template {name}: {}", e.kind());
    if let Some(detail) = e.detail() {
        msg.push_str(&format!(": {detail}"));
    }
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (line {line})"));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_renders_context_values() {
        let r = Renderer::new();
        let out = r
            .render(
                "t",
                "vip={{ cluster.vip }} port={{ cluster.port }}\n",
                &json!({"cluster": {"vip": "10.0.0.100", "port": 8443}}),
            )
            .unwrap();
        assert_eq!(out, "vip=10.0.0.100 port=8443\n");
    }

    #[test]
    fn undefined_variable_is_an_error_not_empty() {
        let err = Renderer::new()
            .render(
                "kubeadm.yaml",
                "endpoint: {{ cluster.vipp }}",
                &json!({"cluster": {}}),
            )
            .unwrap_err();
        assert!(
            err.contains("kubeadm.yaml") && err.contains("undefined"),
            "{err}"
        );
    }

    #[test]
    fn values_are_not_html_escaped() {
        let out = Renderer::new()
            .render("t", "{{ v }}", &json!({"v": "a<b & 'c'"}))
            .unwrap();
        assert_eq!(out, "a<b & 'c'");
    }

    #[test]
    fn quote_filter_makes_shell_safe_words() {
        let out = Renderer::new()
            .render(
                "t",
                "rm -f {{ p | quote }}",
                &json!({"p": "/tmp/a b; reboot"}),
            )
            .unwrap();
        assert_eq!(out, "rm -f '/tmp/a b; reboot'");
    }

    #[test]
    fn when_expressions_evaluate_on_facts() {
        let r = Renderer::new();
        let ctx = json!({"facts": {"swap_kb": 0, "os": {"id": "debian"}}});
        assert!(
            r.eval_bool("facts.os.id == 'debian' and facts.swap_kb == 0", &ctx)
                .unwrap()
        );
        assert!(!r.eval_bool("facts.swap_kb > 0", &ctx).unwrap());
        assert!(
            r.eval_bool("facts.nope == 1", &ctx).is_err(),
            "strict undefined applies to expressions too"
        );
    }
}
