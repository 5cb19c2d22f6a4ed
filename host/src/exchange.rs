//! A running guest and the reading of its answer, side by side.
//!
//! The guest's response is read whole (up to its limit) before it is sent, so that a guest that
//! traps, overruns or never answers still costs its client only a well-formed 5xx.

use http_body_util::{BodyExt, LengthLimitError, Limited};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::refusal::{GuestOutcome, Refusal, full_body};

/// A running guest and what became of it.
///
/// The guest and the reading of its answer are polled together in the request's own task:
/// each step of one (a response head, a body chunk) wakes the other without a hop to another
/// task or thread, which is most of what a small request costs.
pub struct Exchange<G> {
    guest: std::pin::Pin<Box<G>>,
    finished: Option<GuestOutcome>,
}

impl<G> Exchange<G> {
    /// `guest`: the instance's whole run, which ends with its outcome.
    pub fn new(guest: G) -> Self {
        Self {
            guest: Box::pin(guest),
            finished: None,
        }
    }
}

/// What the guest sets as its response, through `wasi:http`'s response outparam.
pub type ResponseHead = Result<hyper::Response<HyperOutgoingBody>, ErrorCode>;

impl<G> Exchange<G>
where
    G: Future<Output = GuestOutcome> + Send + 'static,
{
    /// Drives `work` while the guest runs beside it.
    async fn beside<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                done = &mut work => return done,
                result = &mut self.guest, if self.finished.is_none() => self.finished = Some(result),
            }
        }
    }

    /// How the guest ended (waiting for it if it has not yet).
    async fn outcome(&mut self) -> GuestOutcome {
        match self.finished.take() {
            Some(result) => result,
            None => (&mut self.guest).await,
        }
    }

    /// The guest's response, read whole (up to `max_response` bytes), or why there is none.
    pub async fn answer(
        mut self,
        head: tokio::sync::oneshot::Receiver<ResponseHead>,
        max_response: usize,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Refusal> {
        let head = self.beside(head).await;
        let response = match head {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                return Err(Refusal::bad_answer(format!(
                    "the component answered with error code {code:?}"
                )));
            }
            // The sender went with the store: the guest returned or trapped without setting a
            // response. Its outcome says which.
            Err(_) => return Err(Refusal::from_guest(self.outcome().await, "set no response")),
        };
        let (parts, body) = response.into_parts();
        let collected = self
            .beside(Limited::new(body, max_response).collect())
            .await;
        match collected {
            Ok(body) => {
                if self.finished.is_none() {
                    // The answer is complete; whatever the guest still does runs on, within its
                    // deadline, without holding the client.
                    tokio::spawn(self.guest);
                }
                Ok(hyper::Response::from_parts(
                    parts,
                    full_body(body.to_bytes()),
                ))
            }
            Err(err) if err.is::<LengthLimitError>() => Err(Refusal::bad_answer(format!(
                "the component's response is larger than the {max_response}-byte limit"
            ))),
            Err(_) => Err(Refusal::from_guest(
                self.outcome().await,
                "broke off its response",
            )),
        }
    }
}
