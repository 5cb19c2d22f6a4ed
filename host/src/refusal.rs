//! Answers the host gives itself, instead of the guest: a status and a JSON
//! `{"error": "..."}` body with CORS, like every error the todo component gives.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::Trap;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::wasi_keyvalue::KvLimitBroken;

/// What `Retry-After` says when the host is full.
const RETRY_AFTER_SECONDS: &str = "1";

/// Why the host answered instead of the guest: a status and a message for the client.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    /// Whose fault it is, for the log: only the client's goes unlogged.
    pub fault: Fault,
    reason: &'static str,
}

/// Who caused a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A bad or oversized request: the client is told; the log need not be.
    Client,
    /// The component trapped, overran a limit, or answered nothing usable.
    Component,
    /// The host was full or could not prepare an instance.
    Host,
}

impl Refusal {
    /// A refusal of the client's request.
    pub fn new(status: u16, message: String) -> Self {
        Self {
            status,
            message,
            fault: Fault::Client,
            reason: "client",
        }
    }

    fn by(fault: Fault, status: u16, message: String) -> Self {
        let reason = match fault {
            Fault::Client => "client",
            Fault::Component => "bad_answer",
            Fault::Host => "host",
        };
        Self {
            status,
            message,
            fault,
            reason,
        }
    }

    /// The host failed to do its part.
    pub fn host(message: String) -> Self {
        Self::by(Fault::Host, 500, message)
    }

    /// The component failed.
    fn component(status: u16, message: String) -> Self {
        Self::by(Fault::Component, status, message)
    }

    /// The component answered with something the host cannot send.
    pub fn bad_answer(message: String) -> Self {
        Self::component(500, message)
    }

    pub fn no_route(path: &str) -> Self {
        Self::new(404, format!("no component serves {path}")).because("no_route")
    }

    pub fn busy(max_concurrency: usize) -> Self {
        Self::by(
            Fault::Host,
            503,
            format!(
                "the server is at its limit of {max_concurrency} concurrent requests; retry shortly"
            ),
        )
        .because("admission")
    }

    pub fn deadline(timeout: Duration) -> Self {
        Self::component(
            504,
            format!("the component did not finish within the {timeout:?} request deadline"),
        )
        .because("timeout")
    }

    /// The refusal for a guest that ended as `outcome` after it `what` (e.g. "set no
    /// response").
    pub fn from_guest(outcome: GuestOutcome, what: &str) -> Self {
        let err = match outcome.result {
            Ok(()) => return Self::component(500, format!("the component {what}")),
            Err(err) => err,
        };
        if let Some(limit) = outcome.memory_limit_hit {
            return Self::component(
                500,
                format!(
                    "the component exceeded its memory limit of {limit} bytes and was stopped ({what})"
                ),
            )
            .because("memory_limit");
        }
        if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            // The epoch deadline interrupted it.
            return Self::component(
                504,
                format!("the component ran past its deadline and was stopped ({what})"),
            )
            .because("timeout");
        }
        if let Some(broken) = err.downcast_ref::<KvLimitBroken>() {
            return Self::component(
                broken.status,
                format!("the component broke a key-value limit: {}", broken.message),
            )
            .because("kv_limit");
        }
        Self::component(500, format!("the component failed: {err:#}")).because("trap")
    }

    /// Why, in a word, for the `refusals` metric: `admission`, `timeout`, `memory_limit`,
    /// `kv_limit`, `trap`, `bad_answer`, `no_route`, `host` or `client`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    fn because(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// Logs what is not the client's fault, and answers.
    pub fn into_response(self) -> hyper::Response<HyperOutgoingBody> {
        match self.fault {
            Fault::Client => {}
            Fault::Component => {
                tracing::warn!(status = self.status, cause = %self.message, "the component failed a request")
            }
            Fault::Host => {
                tracing::warn!(status = self.status, cause = %self.message, "the host refused a request")
            }
        }
        let mut response = json_error(self.status, &self.message);
        if self.status == 503 {
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

/// How a guest's run ended: its result, and whether the memory limit refused it a grow (which
/// is then the cause of the failure, whatever trap it led to).
pub struct GuestOutcome {
    pub result: wasmtime::Result<()>,
    /// The limit, in bytes, when it refused a grow.
    pub memory_limit_hit: Option<usize>,
}

/// A response with a JSON `{"error": message}` body, made by the host itself.
pub fn json_error(status: u16, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("access-control-allow-origin", "*")
        .body(full_body(Bytes::from(body)))
        .unwrap_or_else(|_| hyper::Response::new(full_body(Bytes::new())))
}

/// `bytes` as a response body.
pub fn full_body(bytes: Bytes) -> HyperOutgoingBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_is_json_with_cors_and_503_says_when_to_retry() -> anyhow::Result<()> {
        let response = Refusal::busy(7).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let body = response.into_body().collect().await?.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        assert!(
            json["error"]
                .as_str()
                .is_some_and(|e| e.contains("7 concurrent"))
        );
        let quoted = json_error(400, "a \"quote\"\n")
            .into_body()
            .collect()
            .await?
            .to_bytes();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&quoted)?["error"],
            "a \"quote\"\n"
        );
        Ok(())
    }
}
