//! The admin operations the service answers, as they travel: one JSON
//! request and one JSON response per connection (the transports in
//! `api/` carry them; the service owns their vocabulary).

use serde::{Deserialize, Serialize};

use crate::model::metric::Metric;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    GetThresholds,
    /// `value: None` drops the override (back to the policy's value).
    SetThreshold {
        name: Metric,
        value: Option<u64>,
    },
    Reload,
    Block {
        net: String,
        ttl_s: Option<u64>,
        reason: String,
    },
    Unblock {
        net: String,
    },
    Allow {
        net: String,
        ttl_s: Option<u64>,
        reason: String,
    },
    Disallow {
        net: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            error: None,
            data,
        }
    }

    pub fn err(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            data: serde_json::Value::Null,
        }
    }
}
