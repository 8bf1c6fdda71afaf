//! API errors rendered as meta/v1 Status objects with the real reasons and messages.

use serde_json::{Value, json};

use crate::catalog::ResourceType;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }

    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", msg)
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        let mut e = ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        );
        e.details = details(rt, name);
        e
    }

    pub fn not_found_plain(msg: impl Into<String>) -> ApiError {
        ApiError::new(404, "NotFound", msg)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> ApiError {
        let mut e = ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        );
        e.details = details(rt, name);
        e
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> ApiError {
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        );
        e.details = details(rt, name);
        e
    }

    pub fn forbidden(rt: &ResourceType, name: &str, why: &str) -> ApiError {
        let mut e = ApiError::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", rt.qualified()),
        );
        e.details = details(rt, name);
        e
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unavailable(msg: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", msg)
    }

    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", msg)
    }

    /// 422 Invalid with the causes, formatted as the API formats field.ErrorList.
    pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> ApiError {
        let parts: Vec<String> = causes.iter().map(Cause::render).collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {joined}", rt.qualified_kind()),
        );
        let mut d = details(rt, name);
        d["kind"] = json!(rt.kind);
        d["causes"] = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message(), "field": c.field}))
            .collect();
        e.details = d;
        e
    }
}

fn details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.resource});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}

/// One field error (k8s.io/apimachinery field.Error).
#[derive(Debug, Clone)]
pub struct Cause {
    pub field: String,
    pub reason: &'static str,
    /// The rendered bad value, for Invalid.
    pub value: Option<String>,
    pub detail: String,
}

impl Cause {
    pub fn required(field: &str) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueRequired",
            value: None,
            detail: String::new(),
        }
    }

    pub fn required_because(field: &str, detail: &str) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueRequired",
            value: None,
            detail: detail.into(),
        }
    }

    pub fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
        let value = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            field: field.into(),
            reason: "FieldValueInvalid",
            value: Some(value),
            detail: detail.into(),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueForbidden",
            value: None,
            detail: detail.into(),
        }
    }

    pub fn not_supported(field: &str, value: &Value, supported: &str) -> Cause {
        let value = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            field: field.into(),
            reason: "FieldValueNotSupported",
            value: Some(value),
            detail: format!("supported values: {supported}"),
        }
    }

    pub fn too_long(field: &str, max: usize) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueTooLong",
            value: None,
            detail: format!("must have at most {max} bytes"),
        }
    }

    pub fn immutable(field: &str, value: &Value) -> Cause {
        Cause::invalid(field, value, "field is immutable")
    }

    fn message(&self) -> String {
        let head = match self.reason {
            "FieldValueRequired" => "Required value".to_owned(),
            "FieldValueForbidden" => "Forbidden".to_owned(),
            "FieldValueTooLong" => "Too long".to_owned(),
            "FieldValueNotSupported" => format!(
                "Unsupported value: {}",
                self.value.clone().unwrap_or_default()
            ),
            _ => format!("Invalid value: {}", self.value.clone().unwrap_or_default()),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }

    fn render(&self) -> String {
        format!("{}: {}", self.field, self.message())
    }
}
