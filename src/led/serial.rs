//! Async transport to the Arduino LED controller over a serial port.
//!
//! [`LedLink`] is one open connection: it performs the `HELLO` handshake,
//! sends acked commands with timeout and bounded retries (measuring the
//! send → `OK` round trip), switches to binary mode, and sends
//! fire-and-forget stream frames. [`spawn_serial`] wraps a link in a
//! background task fed by a bounded `tokio::sync::mpsc` channel: it never
//! blocks or crashes the caller, drops stale band/beat updates when the queue
//! is full (never state commands), publishes [`LedStatus`] on a
//! `tokio::sync::watch`, and when the port vanishes (USB unplugged) reports
//! `Disconnected`, keeps reopening the path every few hundred ms, then
//! re-handshakes and re-sends the current pattern state.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::protocol::{
    encode_frame, encode_line, Command, Decoder, DeviceInfo, ErrorCode, Framing, LedState, Packet,
    ProtocolError, Reply, FRAME_GAP_MS, PROTOCOL_VERSION,
};

/// Default baud rate of the controller.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Errors of the serial transport. Each carries the port path.
#[derive(Debug, thiserror::Error)]
pub enum LedError {
    /// The port could not be opened.
    #[error("cannot open serial port {path}: {source}")]
    Open {
        /// Port path.
        path: String,
        /// Underlying error.
        #[source]
        source: tokio_serial::Error,
    },
    /// Read or write failed (port vanished, device unplugged, ...).
    #[error("I/O error on serial port {path}: {source}")]
    Io {
        /// Port path.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The port reported end of stream.
    #[error("serial port {path} closed")]
    Closed {
        /// Port path.
        path: String,
    },
    /// The port path no longer exists.
    #[error("serial port {path} disappeared")]
    Vanished {
        /// Port path.
        path: String,
    },
    /// A write did not complete in time.
    #[error("write to serial port {path} stalled for {waited:?}")]
    WriteStalled {
        /// Port path.
        path: String,
        /// How long we waited.
        waited: Duration,
    },
    /// No `CONVOY-LED` banner in answer to `HELLO`.
    #[error("no handshake answer from {path} within {waited:?}")]
    HandshakeTimeout {
        /// Port path.
        path: String,
        /// How long we tried.
        waited: Duration,
    },
    /// A command was not acknowledged after all retries.
    #[error("no ack from {path} for {command} (seq {seq}) after {attempts} attempts")]
    AckTimeout {
        /// Port path.
        path: String,
        /// Command kind.
        command: &'static str,
        /// Sequence number used.
        seq: u8,
        /// Attempts made.
        attempts: u32,
    },
    /// The device answered `ERR`.
    #[error("{path} rejected {command} (seq {seq}): {code:?} {text}")]
    Rejected {
        /// Port path.
        path: String,
        /// Command kind.
        command: &'static str,
        /// Sequence number used.
        seq: u8,
        /// Device error code.
        code: ErrorCode,
        /// Device error text.
        text: String,
    },
    /// A command could not be encoded.
    #[error("cannot encode for {path}: {source}")]
    Encode {
        /// Port path.
        path: String,
        /// Codec error.
        #[source]
        source: ProtocolError,
    },
    /// The queue to the LED task is full (state commands are never dropped
    /// silently: `try_send` reports this instead).
    #[error("LED command queue full, {command} not queued")]
    QueueFull {
        /// Command kind.
        command: &'static str,
    },
    /// The LED task has ended.
    #[error("LED task has stopped")]
    TaskGone,
}

impl LedError {
    /// Whether this error means the connection is unusable and must be reopened.
    pub fn is_link_loss(&self) -> bool {
        matches!(
            self,
            LedError::Io { .. }
                | LedError::Closed { .. }
                | LedError::Vanished { .. }
                | LedError::WriteStalled { .. }
        )
    }
}

/// A successful acked exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Time from the last (re)send to the matching reply.
    pub rtt: Duration,
    /// Attempts needed (1 = no retry).
    pub attempts: u32,
    /// The reply (`Ok`, or `Hello` for a handshake).
    pub reply: Reply,
}

/// Timing knobs of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTiming {
    /// How long to wait for each ack.
    pub ack_timeout: Duration,
    /// Resends after the first attempt.
    pub max_retries: u32,
    /// Give up on a write after this long.
    pub write_timeout: Duration,
}

impl Default for LinkTiming {
    fn default() -> Self {
        LinkTiming {
            ack_timeout: Duration::from_millis(300),
            max_retries: 3,
            write_timeout: Duration::from_secs(1),
        }
    }
}

/// One open connection to a controller (any byte stream; normally a
/// [`SerialStream`]).
#[derive(Debug)]
pub struct LedLink<S> {
    io: S,
    path: String,
    timing: LinkTiming,
    decoder: Decoder<Reply>,
    rbuf: [u8; 256],
    rstart: usize,
    rend: usize,
    next_seq: u8,
    binary: bool,
    device: Option<DeviceInfo>,
    device_reset: bool,
    out: Vec<u8>,
    last_write: Instant,
    last_read: Instant,
}

impl LedLink<SerialStream> {
    /// Open `path` at `baud` (8N1, no flow control).
    pub fn open(path: &Path, baud: u32, timing: LinkTiming) -> Result<Self, LedError> {
        let label = path.display().to_string();
        let io = tokio_serial::new(label.clone(), baud)
            .timeout(Duration::from_millis(10))
            .open_native_async()
            .map_err(|source| LedError::Open {
                path: label.clone(),
                source,
            })?;
        Ok(LedLink::new(io, label, timing))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> LedLink<S> {
    /// Wrap an already open byte stream; `path` is used in errors.
    pub fn new(io: S, path: impl Into<String>, timing: LinkTiming) -> Self {
        LedLink {
            io,
            path: path.into(),
            timing,
            decoder: Decoder::new(),
            rbuf: [0; 256],
            rstart: 0,
            rend: 0,
            next_seq: 1,
            binary: false,
            device: None,
            device_reset: false,
            out: Vec::with_capacity(64),
            last_write: Instant::now(),
            last_read: Instant::now(),
        }
    }

    /// When bytes were last written.
    pub fn last_write(&self) -> Instant {
        self.last_write
    }

    /// Port path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the link is in binary mode.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Device identity from the last handshake or boot banner.
    pub fn device(&self) -> Option<&DeviceInfo> {
        self.device.as_ref()
    }

    /// Returns true (once) if an unsolicited boot banner was seen, i.e. the
    /// controller rebooted and lost its state.
    pub fn take_device_reset(&mut self) -> bool {
        std::mem::take(&mut self.device_reset)
    }

    fn seq(&mut self) -> u8 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    async fn write_out(&mut self) -> Result<(), LedError> {
        let waited = self.timing.write_timeout;
        let res = tokio::time::timeout(waited, async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        })
        .await;
        self.out.clear();
        self.last_write = Instant::now();
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(LedError::Io {
                path: self.path.clone(),
                source,
            }),
            Err(_) => Err(LedError::WriteStalled {
                path: self.path.clone(),
                waited,
            }),
        }
    }

    /// Next decoded reply, or `None` at `deadline`. Codec errors are logged
    /// and skipped (the decoder resynchronizes by itself).
    pub async fn recv_until(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Packet<Reply>>, LedError> {
        loop {
            while self.rstart < self.rend {
                let b = self.rbuf[self.rstart];
                self.rstart += 1;
                match self.decoder.feed(b) {
                    Some(Ok(p)) => {
                        if let (Reply::Hello(info), None) = (&p.body, p.seq) {
                            tracing::info!(path = %self.path, ?info, "LED controller boot banner");
                            self.device = Some(info.clone());
                            self.device_reset = true;
                            self.binary = false;
                        }
                        return Ok(Some(p));
                    }
                    Some(Err(e)) => {
                        tracing::debug!(path = %self.path, error = %e, "bad reply bytes")
                    }
                    None => {}
                }
            }
            let read = tokio::time::timeout_at(deadline, self.io.read(&mut self.rbuf)).await;
            match read {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => {
                    return Err(LedError::Closed {
                        path: self.path.clone(),
                    })
                }
                Ok(Ok(n)) => {
                    let gap = Duration::from_millis(u64::from(FRAME_GAP_MS));
                    if self.last_read.elapsed() >= gap && self.decoder.expire_partial_frame() {
                        tracing::debug!(path = %self.path, "dropped a stale partial frame");
                    }
                    self.last_read = Instant::now();
                    self.rstart = 0;
                    self.rend = n;
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(Err(source)) => {
                    return Err(LedError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Next decoded reply, waiting as long as needed (cancel-safe: use in
    /// `select!` to watch for unsolicited banners and link loss).
    pub async fn recv(&mut self) -> Result<Packet<Reply>, LedError> {
        loop {
            let far = Instant::now() + Duration::from_secs(3600);
            if let Some(p) = self.recv_until(far).await? {
                return Ok(p);
            }
        }
    }

    fn encode(&mut self, cmd: &Command, seq: Option<u8>, ack: bool) -> Result<(), LedError> {
        let res = if self.binary && cmd.kind() != "HELLO" && cmd.kind() != "BINARY" {
            match encode_frame(cmd, seq.unwrap_or(0), ack, &mut self.out) {
                Err(ProtocolError::NoBinaryForm { .. }) => {
                    // A line ends binary mode on the firmware side.
                    self.binary = false;
                    encode_line(cmd, seq, &mut self.out)
                }
                r => r,
            }
        } else {
            if matches!(cmd, Command::Hello { .. } | Command::Binary) {
                self.binary = false;
            }
            encode_line(cmd, seq, &mut self.out)
        };
        res.map_err(|source| {
            self.out.clear();
            LedError::Encode {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// Send `cmd` and wait for its ack, resending up to `max_retries` times
    /// with the same sequence number. In binary mode commands with a binary
    /// form go as ACK-requested frames; others fall back to a line.
    pub async fn request(&mut self, cmd: &Command) -> Result<Ack, LedError> {
        let seq = self.seq();
        let attempts = self.timing.max_retries + 1;
        for attempt in 1..=attempts {
            self.encode(cmd, Some(seq), true)?;
            self.write_out().await?;
            let sent = Instant::now();
            let deadline = sent + self.timing.ack_timeout;
            while let Some(p) = self.recv_until(deadline).await? {
                if p.seq != Some(seq) {
                    if let (Reply::Hello(_), None) = (&p.body, p.seq) {
                        // Controller rebooted: resend right away.
                        break;
                    }
                    continue;
                }
                let rtt = sent.elapsed();
                match (&p.body, cmd) {
                    (Reply::Hello(info), Command::Hello { .. }) => {
                        self.device = Some(info.clone());
                    }
                    (Reply::Ok, Command::Binary) => self.binary = true,
                    (Reply::Ok, Command::Exit) => self.binary = false,
                    (Reply::Ok, _) => {}
                    (
                        Reply::Err {
                            code: ErrorCode::BadChecksum | ErrorCode::BadFrame,
                            ..
                        },
                        _,
                    ) => {
                        break; // corrupted in transit: retry
                    }
                    (Reply::Err { code, text }, _) => {
                        if *code == ErrorCode::WrongMode && p.framing == Framing::Binary {
                            self.binary = false;
                        }
                        return Err(LedError::Rejected {
                            path: self.path.clone(),
                            command: cmd.kind(),
                            seq,
                            code: *code,
                            text: text.clone(),
                        });
                    }
                    (Reply::Hello(_), _) => continue,
                }
                return Ok(Ack {
                    rtt,
                    attempts: attempt,
                    reply: p.body,
                });
            }
            tracing::debug!(path = %self.path, command = cmd.kind(), seq, attempt, "no ack, retrying");
        }
        Err(LedError::AckTimeout {
            path: self.path.clone(),
            command: cmd.kind(),
            seq,
            attempts,
        })
    }

    /// `HELLO` handshake: resend `HELLO` until the banner arrives or
    /// `timeout` passes (an Arduino resets when the port opens and needs
    /// up to ~2 s in its bootloader).
    pub async fn handshake(
        &mut self,
        timeout: Duration,
    ) -> Result<(DeviceInfo, Duration), LedError> {
        let give_up = Instant::now() + timeout;
        // Terminate any partial line the controller may hold.
        self.out.push(b'\n');
        self.write_out().await?;
        self.binary = false;
        while Instant::now() < give_up {
            let seq = self.seq();
            self.encode(
                &Command::Hello {
                    protocol: PROTOCOL_VERSION,
                },
                Some(seq),
                true,
            )?;
            self.write_out().await?;
            let sent = Instant::now();
            let deadline = (sent + self.timing.ack_timeout).min(give_up);
            while let Some(p) = self.recv_until(deadline).await? {
                match (p.body, p.seq) {
                    (Reply::Hello(info), Some(s)) if s == seq => {
                        if info.protocol != PROTOCOL_VERSION {
                            tracing::warn!(path = %self.path, device = info.protocol, host = PROTOCOL_VERSION, "LED protocol version differs");
                        }
                        self.device = Some(info.clone());
                        self.device_reset = false;
                        return Ok((info, sent.elapsed()));
                    }
                    (Reply::Hello(_), None) => break, // booted just now: ask again
                    _ => {}
                }
            }
        }
        Err(LedError::HandshakeTimeout {
            path: self.path.clone(),
            waited: timeout,
        })
    }

    /// Switch to binary mode (acked `BINARY` line).
    pub async fn enter_binary(&mut self) -> Result<Ack, LedError> {
        self.binary = false;
        self.request(&Command::Binary).await
    }

    /// Leave binary mode (acked EXIT frame).
    pub async fn exit_binary(&mut self) -> Result<Ack, LedError> {
        let r = self.request(&Command::Exit).await;
        self.binary = false;
        r
    }

    /// Send a command without waiting for any reply: a frame without ACK
    /// request in binary mode, a line without `#seq` otherwise.
    pub async fn send_stream(&mut self, cmd: &Command) -> Result<(), LedError> {
        if self.binary {
            let seq = self.seq();
            self.encode(cmd, Some(seq), false)?;
        } else {
            let cmd = match *cmd {
                Command::Bands16(b) => Command::Bands3(fold_bands(&b)),
                c => c,
            };
            self.encode(&cmd, None, false)?;
        }
        self.write_out().await
    }

    /// Discard replies that are already buffered or arrive within `quiet`
    /// (e.g. `OK`s to unsequenced stream lines).
    pub async fn drain(&mut self, quiet: Duration) -> Result<usize, LedError> {
        let mut n = 0;
        while self.recv_until(Instant::now() + quiet).await?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

/// Fold 16 band levels into low/mid/high (max of bands 0-3, 4-9, 10-15).
pub fn fold_bands(b: &[u8; 16]) -> [u8; 3] {
    let max = |s: &[u8]| s.iter().copied().max().unwrap_or(0);
    [max(&b[..4]), max(&b[4..10]), max(&b[10..])]
}

// ---------------------------------------------------------------------------
// Background task

/// Configuration of the serial LED task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    /// Port path, e.g. `/dev/ttyACM0` or a stable `/dev/serial/by-id/...` link.
    pub path: PathBuf,
    /// Baud rate (default [`DEFAULT_BAUD`]).
    pub baud: u32,
    /// Ack timeout, retries, write timeout.
    pub timing: LinkTiming,
    /// How long to keep sending `HELLO` after opening.
    pub handshake_timeout: Duration,
    /// Interval between reopen attempts while disconnected.
    pub reconnect_interval: Duration,
    /// Send an acked `PING` when nothing was sent for this long.
    pub keepalive: Duration,
    /// Send band/beat streams as binary frames (otherwise as lines).
    pub binary_stream: bool,
    /// Leave binary mode after the stream has been idle this long.
    pub binary_idle: Duration,
    /// Capacity of the command queue.
    pub queue_capacity: usize,
}

impl SerialConfig {
    /// Defaults for `path`.
    pub fn new(path: impl Into<PathBuf>) -> SerialConfig {
        SerialConfig {
            path: path.into(),
            baud: DEFAULT_BAUD,
            timing: LinkTiming::default(),
            handshake_timeout: Duration::from_secs(3),
            reconnect_interval: Duration::from_millis(250),
            keepalive: Duration::from_secs(1),
            binary_stream: true,
            binary_idle: Duration::from_millis(500),
            queue_capacity: 64,
        }
    }
}

/// Connection state published in [`LedStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LinkState {
    /// Opening the port / handshaking.
    Connecting,
    /// Handshake done, commands flowing.
    Connected,
    /// Port gone or unresponsive; retrying.
    Disconnected,
    /// Task ended (all handles dropped).
    Stopped,
}

/// Status of the serial LED task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedStatus {
    /// Connection state.
    pub link: LinkState,
    /// Identity of the connected controller.
    pub device: Option<DeviceInfo>,
    /// Whether the link is in binary mode.
    pub binary_mode: bool,
    /// Last error, as text.
    pub last_error: Option<String>,
    /// Successful handshakes so far (1 after the first connect).
    pub connects: u64,
    /// Times the state was re-sent after a (re)connect or controller reboot.
    pub state_resends: u64,
    /// Acked commands.
    pub acks: u64,
    /// Resends needed.
    pub retries: u64,
    /// Commands that were never acked.
    pub ack_timeouts: u64,
    /// Commands the device answered with `ERR`.
    pub rejected: u64,
    /// Stream frames written.
    pub stream_sent: u64,
    /// Stream updates dropped (queue full or superseded).
    pub stream_dropped: u64,
    /// Last measured command round trip.
    pub rtt_last: Option<Duration>,
    /// Smoothed round trip (EWMA, 1/8 weight).
    pub rtt_avg: Option<Duration>,
    /// Largest round trip seen.
    pub rtt_max: Option<Duration>,
}

impl Default for LedStatus {
    fn default() -> Self {
        LedStatus {
            link: LinkState::Connecting,
            device: None,
            binary_mode: false,
            last_error: None,
            connects: 0,
            state_resends: 0,
            acks: 0,
            retries: 0,
            ack_timeouts: 0,
            rejected: 0,
            stream_sent: 0,
            stream_dropped: 0,
            rtt_last: None,
            rtt_avg: None,
            rtt_max: None,
        }
    }
}

impl LedStatus {
    fn record_ack(&mut self, ack: &Ack) {
        self.acks += 1;
        self.retries += u64::from(ack.attempts.saturating_sub(1));
        self.rtt_last = Some(ack.rtt);
        self.rtt_avg = Some(match self.rtt_avg {
            None => ack.rtt,
            Some(avg) => (avg * 7 + ack.rtt) / 8,
        });
        self.rtt_max = Some(self.rtt_max.map_or(ack.rtt, |m| m.max(ack.rtt)));
    }
}

/// What happened to a command handed to the LED task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for sending.
    Queued,
    /// A stream update dropped because the queue was full.
    DroppedStale,
    /// The controller is not connected: nothing is written now. A state command is kept
    /// and sent on the next connect; a stream update is dropped.
    Held,
}

/// Cloneable handle to the serial LED task.
#[derive(Debug, Clone)]
pub struct LedHandle {
    tx: mpsc::Sender<Command>,
    status: watch::Receiver<LedStatus>,
    dropped: Arc<AtomicU64>,
}

impl LedHandle {
    /// Queue a command. Stream updates never wait (dropped when the queue is
    /// full); state/control commands wait for room and are never dropped.
    pub async fn send(&self, cmd: Command) -> Result<Delivery, LedError> {
        if cmd.is_stream() {
            return self.try_send(cmd);
        }
        self.tx.send(cmd).await.map_err(|_| LedError::TaskGone)?;
        if self.status.borrow().link != LinkState::Connected {
            return Ok(Delivery::Held);
        }
        Ok(Delivery::Queued)
    }

    /// Queue without waiting: stream updates are dropped when full, state
    /// commands return [`LedError::QueueFull`] instead.
    pub fn try_send(&self, cmd: Command) -> Result<Delivery, LedError> {
        match self.tx.try_send(cmd) {
            Ok(()) if self.status.borrow().link != LinkState::Connected => Ok(Delivery::Held),
            Ok(()) => Ok(Delivery::Queued),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(LedError::TaskGone),
            Err(mpsc::error::TrySendError::Full(c)) if c.is_stream() => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(Delivery::DroppedStale)
            }
            Err(mpsc::error::TrySendError::Full(c)) => {
                Err(LedError::QueueFull { command: c.kind() })
            }
        }
    }

    /// A receiver of status updates.
    pub fn status(&self) -> watch::Receiver<LedStatus> {
        self.status.clone()
    }

    /// The current status.
    pub fn current_status(&self) -> LedStatus {
        self.status.borrow().clone()
    }
}

/// The one warning for a controller that cannot be reached, with what to do about it.
pub fn unavailable_hint(path: &Path, e: &LedError) -> String {
    if !path.exists() {
        format!(
            "LED port {} missing: is the Arduino plugged in? (the udev rule links it as \
             /dev/convoy-led; `ls -l /dev/serial/by-id/` lists serial devices; set led.port, \
             or led.output = \"sim\" to draw the strip instead). No light command is \
             written until it appears; retrying.",
            path.display()
        )
    } else {
        format!(
            "LED port {} unusable: {e} (is this user in group dialout? `convoy doctor` \
             checks); retrying.",
            path.display()
        )
    }
}

/// Start the serial LED task on the current tokio runtime. The task ends
/// when every [`LedHandle`] is dropped.
pub fn spawn_serial(config: SerialConfig) -> (LedHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let (status_tx, status_rx) = watch::channel(LedStatus::default());
    let dropped = Arc::new(AtomicU64::new(0));
    let task = SerialTask {
        config,
        rx,
        status: status_tx,
        dropped: dropped.clone(),
        desired: LedState::default(),
        have_state: false,
    };
    let join = tokio::spawn(task.run());
    (
        LedHandle {
            tx,
            status: status_rx,
            dropped,
        },
        join,
    )
}

struct SerialTask {
    config: SerialConfig,
    rx: mpsc::Receiver<Command>,
    status: watch::Sender<LedStatus>,
    dropped: Arc<AtomicU64>,
    desired: LedState,
    have_state: bool,
}

enum Exit {
    /// All handles dropped.
    Done,
    /// Link lost: reconnect.
    Lost(LedError),
}

impl SerialTask {
    async fn run(mut self) {
        let path_label = self.config.path.display().to_string();
        // Warn once (at start, or when a connection is lost), not on every retry.
        let mut warned = false;
        loop {
            self.status.send_modify(|s| s.link = LinkState::Connecting);
            match self.connect().await {
                Ok(link) => match self.serve(link).await {
                    Exit::Done => break,
                    Exit::Lost(e) => {
                        tracing::warn!(path = %path_label, error = %e, "LED controller disconnected");
                        self.set_disconnected(&e);
                        warned = true;
                    }
                },
                Err(e) => {
                    if !warned {
                        tracing::warn!("{}", unavailable_hint(&self.config.path, &e));
                        warned = true;
                    } else {
                        tracing::debug!(path = %path_label, error = %e, "LED controller not available");
                    }
                    self.set_disconnected(&e);
                }
            }
            if !self.idle_wait(self.config.reconnect_interval).await {
                break;
            }
        }
        self.status.send_modify(|s| s.link = LinkState::Stopped);
    }

    fn set_disconnected(&self, e: &LedError) {
        let text = e.to_string();
        self.status.send_modify(|s| {
            s.link = LinkState::Disconnected;
            s.binary_mode = false;
            s.last_error = Some(text);
            s.stream_dropped = self.dropped.load(Ordering::Relaxed);
        });
    }

    /// While disconnected: remember state commands, drop stream updates.
    /// Returns false when all handles are gone.
    async fn idle_wait(&mut self, dur: Duration) -> bool {
        let until = Instant::now() + dur;
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Err(_) => return true,
                Ok(None) => return false,
                Ok(Some(cmd)) => {
                    if self.desired.apply(&cmd) {
                        self.have_state = true;
                    } else if cmd.is_stream() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    async fn connect(&mut self) -> Result<LedLink<SerialStream>, LedError> {
        let cfg = &self.config;
        if !cfg.path.exists() {
            return Err(LedError::Vanished {
                path: cfg.path.display().to_string(),
            });
        }
        let mut link = LedLink::open(&cfg.path, cfg.baud, cfg.timing)?;
        let (info, rtt) = link.handshake(cfg.handshake_timeout).await?;
        tracing::info!(path = %link.path(), ?info, ?rtt, "LED controller connected");
        self.status.send_modify(|s| {
            s.link = LinkState::Connected;
            s.device = Some(info);
            s.connects += 1;
            s.binary_mode = false;
            s.rtt_last = Some(rtt);
            // What was dropped while the link was down is told now, not at the first
            // event on the new link.
            s.stream_dropped = self.dropped.load(Ordering::Relaxed);
        });
        if self.have_state {
            self.resend_state(&mut link).await?;
        }
        Ok(link)
    }

    async fn resend_state(&mut self, link: &mut LedLink<SerialStream>) -> Result<(), LedError> {
        let ack = link.request(&Command::State(self.desired)).await?;
        self.status.send_modify(|s| {
            s.state_resends += 1;
            s.record_ack(&ack);
        });
        Ok(())
    }

    /// Run an acked request, updating counters. Link loss and repeated
    /// timeouts are returned as errors; rejections are only recorded.
    async fn acked(
        &mut self,
        link: &mut LedLink<SerialStream>,
        cmd: &Command,
    ) -> Result<(), LedError> {
        match link.request(cmd).await {
            Ok(ack) => {
                self.status.send_modify(|s| {
                    s.record_ack(&ack);
                    s.binary_mode = link.is_binary();
                });
                Ok(())
            }
            Err(e @ LedError::Rejected { .. }) => {
                let text = e.to_string();
                self.status.send_modify(|s| {
                    s.rejected += 1;
                    s.last_error = Some(text);
                    s.binary_mode = link.is_binary();
                });
                Ok(())
            }
            Err(e) => {
                if matches!(e, LedError::AckTimeout { .. }) {
                    self.status.send_modify(|s| s.ack_timeouts += 1);
                }
                Err(e)
            }
        }
    }

    async fn serve(&mut self, mut link: LedLink<SerialStream>) -> Exit {
        let cfg = self.config.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_stream = Instant::now();
        let mut batch: Vec<Command> = Vec::with_capacity(cfg.queue_capacity);
        loop {
            let res: Result<(), LedError> = tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { return Exit::Done };
                    batch.clear();
                    batch.push(cmd);
                    while batch.len() < cfg.queue_capacity {
                        match self.rx.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    self.process_batch(&mut link, &mut batch, &mut last_stream).await
                }
                r = link.recv() => match r {
                    Ok(p) => {
                        tracing::trace!(?p, "unsolicited reply");
                        if link.take_device_reset() && self.have_state {
                            self.resend_state(&mut link).await
                        } else {
                            Ok(())
                        }
                    }
                    Err(e) => Err(e),
                },
                _ = tick.tick() => self.housekeeping(&mut link, last_stream).await,
            };
            self.status.send_modify(|s| {
                s.stream_dropped = self.dropped.load(Ordering::Relaxed);
                s.binary_mode = link.is_binary();
            });
            if let Err(e) = res {
                return Exit::Lost(e);
            }
        }
    }

    async fn housekeeping(
        &mut self,
        link: &mut LedLink<SerialStream>,
        last_stream: Instant,
    ) -> Result<(), LedError> {
        if !self.config.path.exists() {
            return Err(LedError::Vanished {
                path: self.config.path.display().to_string(),
            });
        }
        if link.is_binary() && last_stream.elapsed() >= self.config.binary_idle {
            let cmd = Command::Exit;
            return self.acked(link, &cmd).await;
        }
        if !link.is_binary() && link.last_write().elapsed() >= self.config.keepalive {
            let cmd = Command::Ping;
            return self.acked(link, &cmd).await;
        }
        Ok(())
    }

    async fn process_batch(
        &mut self,
        link: &mut LedLink<SerialStream>,
        batch: &mut [Command],
        last_stream: &mut Instant,
    ) -> Result<(), LedError> {
        // Keep only the newest band update and the newest beat.
        let last_bands = batch
            .iter()
            .rposition(|c| matches!(c, Command::Bands3(_) | Command::Bands16(_)));
        let last_beat = batch
            .iter()
            .rposition(|c| matches!(c, Command::Beat { .. }));
        let mut superseded = 0u64;
        for (i, cmd) in batch.iter().enumerate() {
            let keep = match cmd {
                Command::Bands3(_) | Command::Bands16(_) => Some(i) == last_bands,
                Command::Beat { .. } => Some(i) == last_beat,
                _ => true,
            };
            if !keep {
                superseded += 1;
                continue;
            }
            if cmd.is_stream() {
                *last_stream = Instant::now();
                if self.config.binary_stream && !link.is_binary() {
                    self.acked(link, &Command::Binary).await?;
                }
                link.send_stream(cmd).await?;
                self.status.send_modify(|s| s.stream_sent += 1);
                continue;
            }
            if self.desired.apply(cmd) {
                self.have_state = true;
                let to_send = if link.is_binary() {
                    Command::State(self.desired)
                } else {
                    *cmd
                };
                self.acked(link, &to_send).await?;
                continue;
            }
            match cmd {
                Command::Hello { .. } => {
                    let (info, _) = link.handshake(self.config.handshake_timeout).await?;
                    self.status.send_modify(|s| s.device = Some(info));
                }
                other => self.acked(link, other).await?,
            }
        }
        if superseded > 0 {
            self.dropped.fetch_add(superseded, Ordering::Relaxed);
        }
        // Line-mode stream updates are answered with unsequenced OKs; they are
        // simply skipped by later reads.
        Ok(())
    }
}
