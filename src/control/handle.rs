//! The node's control surface: one command channel in, one state snapshot out.
//!
//! Every front end — the OSC control port, the phone web app, the EchoFlux-style HTTP API,
//! a DAW follower — translates its protocol into a [`Command`] and sends it through a
//! cloneable [`NodeHandle`]; the node answers each with accepted or a [`Refusal`], and
//! publishes what it is doing as a
//! [`Snapshot`] on a `watch` channel. Front ends never touch the player, the sockets or
//! the LED link, so each can be tested against a detached handle ([`NodeHandle::channel`])
//! whose other end the test plays.

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Command, Refusal, Snapshot};
use crate::clock::mono_ns;
use crate::live::LiveBus;

/// Who asked (for logs, per-origin policy and feedback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The OSC control port; the sender's address.
    Osc(String),
    /// The web app or HTTP API; the client's address.
    Web(String),
    /// The show runner or another part of the node itself.
    Internal,
    /// Another fleet node (a command relayed over the fleet channel); its id.
    Fleet(String),
}

/// One command with its origin and, optionally, where to send the verdict.
#[derive(Debug)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// Who asked.
    pub origin: Origin,
    /// Answered with `Ok` when the node accepted the command, or why not.
    pub reply: Option<oneshot::Sender<Result<(), Refusal>>>,
}

/// Why a command did not reach the node or was refused by it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandleError {
    /// The node has stopped.
    #[error("the node is not running")]
    Closed,
    /// The command queue is full (a flood); the command was dropped.
    #[error("the node is busy; command dropped")]
    Busy,
    /// The node refused the command.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Cloneable front-end side of a node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Request>,
    state: watch::Receiver<Snapshot>,
    /// What moves with the music (the node's show runner posts into it).
    live: LiveBus,
}

/// The node side of a [`NodeHandle`]: requests to serve and the snapshot to publish.
#[derive(Debug)]
pub struct NodeInbox {
    /// Incoming requests.
    pub requests: mpsc::Receiver<Request>,
    /// Publish state here.
    pub state: watch::Sender<Snapshot>,
}

/// Requests queued before senders see [`HandleError::Busy`].
const QUEUE: usize = 256;

impl NodeHandle {
    /// A handle and the inbox the node (or a test) serves.
    pub fn channel(initial: Snapshot) -> (NodeHandle, NodeInbox) {
        let (tx, requests) = mpsc::channel(QUEUE);
        let (state_tx, state) = watch::channel(initial);
        (
            NodeHandle {
                tx,
                state,
                live: LiveBus::new(),
            },
            NodeInbox {
                requests,
                state: state_tx,
            },
        )
    }

    /// Send a command and wait for the node's verdict.
    pub async fn execute(&self, command: Command, origin: Origin) -> Result<(), HandleError> {
        match self.send(command, origin)?.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(HandleError::Refused(why)),
            Err(_) => Err(HandleError::Closed),
        }
    }

    /// Queue a command now and await its verdict later (or never): the request is in the
    /// node's queue, or refused as busy/closed, before this returns, so commands sent in
    /// order arrive in order even when their verdicts are awaited elsewhere. Never blocks;
    /// usable from any thread (the OSC timetag scheduler fires bundles from its own).
    pub fn send(
        &self,
        command: Command,
        origin: Origin,
    ) -> Result<oneshot::Receiver<Result<(), Refusal>>, HandleError> {
        let (reply, verdict) = oneshot::channel();
        self.tx
            .try_send(Request {
                command,
                origin,
                reply: Some(reply),
            })
            .map_err(send_error)?;
        Ok(verdict)
    }

    /// Send a command without waiting for the verdict; never blocks.
    pub fn submit(&self, command: Command, origin: Origin) -> Result<(), HandleError> {
        self.tx
            .try_send(Request {
                command,
                origin,
                reply: None,
            })
            .map_err(send_error)
    }

    /// The latest snapshot, as the node last published it (for humans: status, lists).
    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    /// The snapshot with position, beat, levels and tempo as the live plane has them at
    /// this instant: what every surface that moves with the music sends.
    pub fn snapshot_now(&self) -> Snapshot {
        self.snapshot().live(&self.live.view(mono_ns()))
    }

    /// The node's live plane.
    pub fn live(&self) -> &LiveBus {
        &self.live
    }

    /// A receiver that wakes on every published change.
    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        self.state.clone()
    }
}

fn send_error<T>(e: mpsc::error::TrySendError<T>) -> HandleError {
    match e {
        mpsc::error::TrySendError::Full(_) => HandleError::Busy,
        mpsc::error::TrySendError::Closed(_) => HandleError::Closed,
    }
}

impl Request {
    /// Answer the sender, if it waits.
    pub fn answer(self, verdict: Result<(), Refusal>) {
        if let Some(r) = self.reply {
            let _ = r.send(verdict);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_round_trip_with_verdicts() {
        let (handle, mut inbox) = NodeHandle::channel(Snapshot::default());
        let node = tokio::spawn(async move {
            while let Some(req) = inbox.requests.recv().await {
                let verdict = match &req.command {
                    Command::Stop => {
                        inbox.state.send_modify(|s| s.playing = false);
                        Ok(())
                    }
                    other => Err(Refusal::not_for(other, "test")),
                };
                req.answer(verdict);
            }
        });
        let h = handle.clone();
        assert_eq!(h.execute(Command::Stop, Origin::Internal).await, Ok(()));
        assert!(matches!(
            h.execute(Command::Go, Origin::Internal).await,
            Err(HandleError::Refused(Refusal::NotFor(m, _))) if m.contains("Go")
        ));
        drop((h, handle));
        node.await.ok();
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_not_blocking() {
        let (handle, inbox) = NodeHandle::channel(Snapshot::default());
        for _ in 0..QUEUE {
            handle.submit(Command::Go, Origin::Internal).ok();
        }
        assert_eq!(
            handle.submit(Command::Go, Origin::Internal),
            Err(HandleError::Busy)
        );
        drop(inbox);
        assert_eq!(
            handle.submit(Command::Go, Origin::Internal),
            Err(HandleError::Closed)
        );
    }
}
