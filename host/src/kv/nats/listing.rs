//! Listing a bucket's keys a page at a time, with a stream sequence as the cursor.
//!
//! A bucket created here keeps one message per key (history 1): the latest put or the delete
//! marker. Its stream is thus, in sequence order, exactly the bucket's current keys (plus
//! markers), and the cursor is a **stream sequence**: the last one the previous page covered.
//! A page is one batched direct get, `{"seq": cursor + 1, "next_by_subj": "$KV.B.>", "batch":
//! 1000}`, answered by one replica with up to 1000 messages and an end-of-batch note saying how
//! many follow; delete markers are skipped, so a page holds at most [`LIST_PAGE_SIZE`] keys.
//!
//! A replica may lag. A page cut short by the batch size has no hole (the replica applied
//! everything up to its last message, in order); only a *last* page may miss the newest writes.
//! So, alongside each page, the leader is asked for the stream's last sequence, and a last page
//! must reach it; if it does not, the rest is read from the leader, one message per request.
//! Hence a listing returns every key written (and not deleted) before it started.
//!
//! A write during paging moves its key to the end of the stream: a key not yet listed is listed
//! once (or not at all, if deleted); a key already listed is listed again if it is rewritten (as
//! with Redis `SCAN`, a caller that must not see a key twice keeps one of each). Keys nobody
//! touches appear exactly once.
//!
//! A bucket made elsewhere with history above 1 also holds older revisions; listing then keeps
//! a message only if the leader says it is the key's latest (one more request per key). One
//! without direct get is listed from the leader alone, [`LEADER_PAGE`] messages a page.

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::future::join_all;

use super::keys::KeyToken;
use super::retry::{ATTEMPT_TIMEOUT, Attempt, read_attempt};
use super::{Bucket, IN_FLIGHT, NatsBackend, OPERATION_HEADER, error_chain};
use crate::kv::{KeyPage, KvError, LIST_PAGE_SIZE};

/// Messages the leader is asked for one by one when a replica's last page fell short.
pub const LEADER_PAGE: usize = 100;
/// Value bytes one listing page may carry (a batched direct get returns whole messages).
const PAGE_BYTES: usize = 4 << 20;

/// A message a listing page met.
#[derive(Clone)]
pub(super) struct Listed {
    pub(super) sequence: u64,
    pub(super) subject: String,
    pub(super) headers: Option<HeaderMap>,
}

impl Listed {
    /// The key this message stands for; `None` for one this host did not write.
    pub(super) fn key(&self, subject_prefix: &str) -> Option<String> {
        let token = self.subject.strip_prefix(subject_prefix)?;
        KeyToken::decode(token, self.headers.as_ref())
    }

    pub(super) fn is_marker(&self) -> bool {
        self.headers
            .as_ref()
            .and_then(|headers| headers.get(OPERATION_HEADER))
            .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE")
    }
}

/// One page as one source returned it.
struct Batch {
    messages: Vec<Listed>,
    /// The source says more messages follow.
    more: bool,
}

impl NatsBackend {
    pub(super) async fn list_in(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<KeyPage, KvError> {
        let open = self.bucket(bucket).await?;
        let after = cursor.unwrap_or(0);
        let (batch, fence) = if open.direct {
            // The leader's last sequence, asked alongside: a last page must reach it.
            let (batch, fence) =
                tokio::join!(self.direct_batch(&open, after), self.last_sequence(&open));
            (batch?, Some(fence?))
        } else {
            (self.leader_batch(&open, after, LEADER_PAGE).await?, None)
        };
        let mut messages = batch.messages;
        let mut more = batch.more;
        let reached = messages.last().map_or(after, |m| m.sequence);
        if let Some(fence) = fence
            && !more
            && reached < fence
        {
            // The replica that answered lags behind the leader: read the rest from the leader.
            tracing::debug!(
                "NATS bucket '{}': a replica listed up to {reached}, the leader has {fence}",
                open.name
            );
            let room = LIST_PAGE_SIZE
                .saturating_sub(messages.len())
                .min(LEADER_PAGE);
            let tail = self.leader_batch(&open, reached, room).await?;
            messages.extend(tail.messages);
            more = tail.more;
        }
        let next = messages.last().map(|m| m.sequence);
        let live: Vec<Listed> = messages.into_iter().filter(|m| !m.is_marker()).collect();
        let live = if open.keeps_history {
            self.only_latest(&open, live).await?
        } else {
            live
        };
        let keys = live
            .iter()
            .filter_map(|m| m.key(&open.subject_prefix))
            .collect();
        Ok(KeyPage {
            keys,
            cursor: if more { next.or(cursor) } else { None },
        })
    }

    /// Up to [`LIST_PAGE_SIZE`] messages after sequence `after`, from whichever replica answers
    /// the stream's direct get first, in one request (sent again while it may pass).
    async fn direct_batch(&self, bucket: &Bucket, after: u64) -> Result<Batch, KvError> {
        self.retrying(|| self.direct_batch_once(bucket, after))
            .await
    }

    async fn direct_batch_once(&self, bucket: &Bucket, after: u64) -> Result<Batch, Attempt> {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|err| Attempt::Transient(error_chain(&err)))?;
        let request = serde_json::json!({
            "seq": after + 1,
            "next_by_subj": bucket.filter(),
            "batch": LIST_PAGE_SIZE,
            "max_bytes": PAGE_BYTES,
        });
        self.client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{}", bucket.stream_name()),
                inbox,
                Bytes::from(request.to_string()),
            )
            .await
            .map_err(|err| Attempt::Transient(error_chain(&err)))?;
        let mut messages = Vec::new();
        loop {
            let reply = tokio::time::timeout(ATTEMPT_TIMEOUT, replies.next())
                .await
                .map_err(|_| {
                    Attempt::Transient(format!(
                        "listing page after sequence {after}: no answer within {ATTEMPT_TIMEOUT:?}"
                    ))
                })?
                .ok_or_else(|| Attempt::Transient("the reply subscription closed".to_string()))?;
            match reply.status.map(|status| status.as_u16()) {
                None => {
                    let header = |name: &str| {
                        reply
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(name))
                            .map(|v| v.as_str().to_string())
                    };
                    let (Some(subject), Some(sequence)) = (
                        header("Nats-Subject"),
                        header("Nats-Sequence").and_then(|s| s.parse().ok()),
                    ) else {
                        return Err(Attempt::Failed(KvError(
                            "a listing reply without subject or sequence".to_string(),
                        )));
                    };
                    messages.push(Listed {
                        sequence,
                        subject,
                        headers: reply.headers,
                    });
                }
                // End of batch: says how many matching messages follow.
                Some(204) => {
                    let pending = reply
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Num-Pending"))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .unwrap_or(0);
                    return Ok(Batch {
                        messages,
                        more: pending > 0,
                    });
                }
                // Nothing at or after the start.
                Some(404) => {
                    return Ok(Batch {
                        messages,
                        more: false,
                    });
                }
                Some(_) if reply.status == Some(StatusCode::NO_RESPONDERS) => {
                    return Err(Attempt::Transient(format!(
                        "no replica of stream '{}' answers (no quorum, or the stream is gone)",
                        bucket.stream_name()
                    )));
                }
                Some(status) => {
                    return Err(Attempt::Failed(KvError(format!(
                        "listing page after sequence {after}: status {status} {}",
                        reply.description.unwrap_or_default()
                    ))));
                }
            }
        }
    }

    /// Up to `limit` messages after sequence `after`, from the stream leader, one request each.
    async fn leader_batch(
        &self,
        bucket: &Bucket,
        after: u64,
        limit: usize,
    ) -> Result<Batch, KvError> {
        let mut messages = Vec::new();
        let mut next = after + 1;
        while messages.len() < limit {
            let found = self
                .retrying(|| async {
                    match bucket
                        .stream
                        .raw_message_builder()
                        .sequence(next)
                        .next_by_subject(bucket.filter())
                        .send()
                        .await
                    {
                        Ok(message) => Ok(Some(message)),
                        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {
                            Ok(None)
                        }
                        Err(err) => Err(read_attempt(&err)),
                    }
                })
                .await?;
            let Some(message) = found else {
                return Ok(Batch {
                    messages,
                    more: false,
                });
            };
            next = message.sequence + 1;
            messages.push(Listed {
                sequence: message.sequence,
                subject: message.subject.to_string(),
                headers: Some(message.headers),
            });
        }
        Ok(Batch {
            messages,
            more: true,
        })
    }

    /// The stream's last sequence, as its leader has it (0: empty).
    async fn last_sequence(&self, bucket: &Bucket) -> Result<u64, KvError> {
        let last = self.last_message(bucket, ">").await?;
        Ok(last.map_or(0, |message| message.sequence))
    }

    /// Of messages from a bucket with history, those that are their key's latest.
    async fn only_latest(
        &self,
        bucket: &Bucket,
        messages: Vec<Listed>,
    ) -> Result<Vec<Listed>, KvError> {
        let mut latest = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(IN_FLIGHT) {
            let checks = chunk.iter().map(|message| self.is_latest(bucket, message));
            let answers = join_all(checks).await;
            for (message, answer) in chunk.iter().zip(answers) {
                if answer? {
                    latest.push(message.clone());
                }
            }
        }
        Ok(latest)
    }

    async fn is_latest(&self, bucket: &Bucket, message: &Listed) -> Result<bool, KvError> {
        let last = self.last_message(bucket, &message.subject).await?;
        Ok(last.is_some_and(|last| last.sequence == message.sequence))
    }
}
