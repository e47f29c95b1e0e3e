//! A TCP proxy between a PostgreSQL client and server that injects the
//! faults a durable store has to survive: connections cut, connections
//! refused, latency, a statement that runs but whose reply is lost, and a
//! statement cut off before it reaches the server.
//!
//! The proxy reads the PostgreSQL v3 frontend/backend protocol in both
//! directions, so its traps match statements by their SQL text: a simple
//! query (`Q`) by its text, an extended-protocol run (`Parse`/`Bind`/
//! `Execute`/`Sync`) by the text of the statement it binds. The proxy
//! remembers, per connection, the text of every statement parsed on it, so
//! a prepared statement that a client (such as sqlx) caches and later only
//! binds by name is still matched.
//!
//! A connection that negotiates TLS or GSSAPI encryption is forwarded byte
//! for byte: its messages cannot be read, so traps never fire on it.
//! Connect through the proxy with `sslmode=disable`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Code of the untyped startup-phase message asking for TLS.
const SSL_REQUEST: u32 = 80_877_103;
/// Code of the untyped startup-phase message asking for GSSAPI encryption.
const GSSENC_REQUEST: u32 = 80_877_104;
/// Code of the untyped startup-phase message cancelling another session's query.
const CANCEL_REQUEST: u32 = 80_877_102;

/// Counters of what a [`FaultProxy`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded to the server.
    pub accepted: u64,
    /// Connections refused (accepted and closed at once).
    pub refused: u64,
    /// Open connections closed by the proxy, by [`FaultProxy::cut_all`] or by
    /// a trap.
    pub cuts: u64,
    /// Statements that ran on the server but whose reply was swallowed
    /// ([`FaultProxy::lose_reply_to`]).
    pub replies_lost: u64,
    /// Statements cut off before they reached the server
    /// ([`FaultProxy::cut_before`]).
    pub cut_before: u64,
}

/// A TCP proxy in front of a PostgreSQL server that injects faults on
/// command.
///
/// Dropping it stops the listener and closes every connection.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::default(),
            cut: watch::Sender::new(0),
            fired: watch::Sender::new(0),
        });
        let acceptor = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(FaultProxy {
            shared,
            addr,
            acceptor,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection now, in both directions: its client sees
    /// the connection end.
    pub fn cut_all(&self) {
        self.shared.cut.send_modify(|generation| *generation += 1);
    }

    /// Refuses new connections (accepts and closes them at once, before any
    /// byte is forwarded) until `d` has passed, replacing any refusal in
    /// force: `Duration::ZERO` lifts it. Open connections are unaffected;
    /// see [`FaultProxy::outage`].
    pub fn refuse_for(&self, d: Duration) {
        self.shared.refuse_for(d);
    }

    /// An outage of `d`: cuts every open connection and refuses new ones
    /// until `d` has passed.
    pub fn outage(&self, d: Duration) {
        self.refuse_for(d);
        self.cut_all();
    }

    /// Delays every chunk forwarded, in either direction, by `d`
    /// (`Duration::ZERO`: no delay).
    pub fn set_delay(&self, d: Duration) {
        self.shared.lock().delay = d;
    }

    /// Arms a trap for the next `times` statements whose SQL text contains
    /// `pattern` (case-sensitive): each is forwarded and runs on the server,
    /// but its reply is swallowed and its connection is cut once the server
    /// has answered (the statement, and in autocommit its commit, landed; the
    /// client never learns it). If `and_refuse` is `Some(d)`, new
    /// connections are then refused for `d`.
    ///
    /// Traps match in the order they were armed; an empty pattern matches
    /// every statement.
    pub fn lose_reply_to(&self, pattern: &str, times: u32, and_refuse: Option<Duration>) {
        self.shared
            .arm(pattern, times, TrapKind::LoseReply, and_refuse);
    }

    /// Arms a trap for the next `times` statements whose SQL text contains
    /// `pattern` (case-sensitive): each is not forwarded, its connection is
    /// cut instead, so the statement never reaches the server. If
    /// `and_refuse` is `Some(d)`, new connections are then refused for `d`.
    pub fn cut_before(&self, pattern: &str, times: u32, and_refuse: Option<Duration>) {
        self.shared
            .arm(pattern, times, TrapKind::CutBefore, and_refuse);
    }

    /// [`FaultProxy::lose_reply_to`], only for runs of the statement whose
    /// bound parameters contain the bytes `bound` (for a simple query: its
    /// text): a commit that finishes a task binds the word `done`, say.
    pub fn lose_reply_to_bound(
        &self,
        pattern: &str,
        bound: &[u8],
        times: u32,
        and_refuse: Option<Duration>,
    ) {
        self.shared
            .arm_bound(pattern, Some(bound), times, TrapKind::LoseReply, and_refuse);
    }

    /// [`FaultProxy::cut_before`], only for runs of the statement whose
    /// bound parameters contain the bytes `bound` (for a simple query: its
    /// text).
    pub fn cut_before_bound(
        &self,
        pattern: &str,
        bound: &[u8],
        times: u32,
        and_refuse: Option<Duration>,
    ) {
        self.shared
            .arm_bound(pattern, Some(bound), times, TrapKind::CutBefore, and_refuse);
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().stats
    }

    /// How many more times the armed traps will fire.
    pub fn traps_pending(&self) -> u32 {
        self.shared.lock().traps.iter().map(|t| t.remaining).sum()
    }

    /// Completes once traps have fired `n` times in all since the proxy
    /// started. A trap has fired when its connection was cut.
    pub async fn wait_fired(&self, n: u64) {
        let mut fired = self.shared.fired.subscribe();
        // The sender lives in `self.shared`, so it cannot close while we wait.
        let _ = fired.wait_for(|&count| count >= n).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it aborts them.
        self.acceptor.abort();
    }
}

/// State shared by the proxy handle, its accept loop and its connections.
struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Bumped by `cut_all`; every connection watches it.
    cut: watch::Sender<u64>,
    /// How many times traps have fired.
    fired: watch::Sender<u64>,
}

/// Settings, traps and counters, behind one lock.
#[derive(Default)]
struct State {
    refuse_until: Option<Instant>,
    delay: Duration,
    traps: Vec<Trap>,
    stats: ProxyStats,
}

/// An armed trap.
struct Trap {
    pattern: String,
    /// Bytes the run's bound parameters must contain, if any.
    bound: Option<Vec<u8>>,
    remaining: u32,
    kind: TrapKind,
    and_refuse: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TrapKind {
    LoseReply,
    CutBefore,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refuse_for(&self, d: Duration) {
        self.lock().refuse_until = Some(Instant::now() + d);
    }

    fn arm(&self, pattern: &str, times: u32, kind: TrapKind, and_refuse: Option<Duration>) {
        self.arm_bound(pattern, None, times, kind, and_refuse);
    }

    fn arm_bound(
        &self,
        pattern: &str,
        bound: Option<&[u8]>,
        times: u32,
        kind: TrapKind,
        and_refuse: Option<Duration>,
    ) {
        if times > 0 {
            self.lock().traps.push(Trap {
                pattern: pattern.to_owned(),
                bound: bound.map(<[u8]>::to_vec),
                remaining: times,
                kind,
                and_refuse,
            });
        }
    }

    /// Takes one firing of the first armed trap matching `sql`, run with
    /// the parameters in `params` (the Bind message's, or the query text).
    fn take_trap(&self, sql: &str, params: &[u8]) -> Option<(TrapKind, Option<Duration>)> {
        let mut state = self.lock();
        let i = state.traps.iter().position(|t| {
            sql.contains(&t.pattern)
                && t.bound
                    .as_deref()
                    .is_none_or(|b| b.is_empty() || params.windows(b.len()).any(|w| w == b))
        })?;
        let trap = &mut state.traps[i];
        trap.remaining -= 1;
        let taken = (trap.kind, trap.and_refuse);
        if trap.remaining == 0 {
            state.traps.remove(i);
        }
        Some(taken)
    }

    async fn delay(&self) {
        let delay = self.lock().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping this set (when the task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Out of file descriptors, say: back off a little.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let refused = {
                    let mut state = shared.lock();
                    let refused = state.refuse_until.is_some_and(|t| Instant::now() < t);
                    if refused {
                        state.stats.refused += 1;
                    } else {
                        state.stats.accepted += 1;
                    }
                    refused
                };
                if !refused {
                    let cut = shared.cut.subscribe();
                    connections.spawn(serve(client, Arc::clone(&shared), cut));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// How a connection ended.
enum End {
    /// One side closed it, or an I/O error.
    Closed,
    /// `cut_all`.
    CutAll,
    /// A `cut_before` trap.
    CutBefore(Option<Duration>),
    /// The server answered the statement of a `lose_reply_to` trap.
    ReplyLost,
}

/// What the two directions of one connection share.
#[derive(Default)]
struct ConnState {
    /// The client asked for encryption; the server's next byte answers.
    encryption_asked: bool,
    /// Encryption was accepted: bytes are forwarded unread.
    opaque: bool,
    /// A `lose_reply_to` trap fired: the number of the sync point (counting
    /// the startup message as 1) whose replies are swallowed, and the
    /// refusal to apply afterwards.
    lose_reply: Option<(u64, Option<Duration>)>,
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>, mut cut: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    // Both ends carry small request/response messages.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let conn = Mutex::new(ConnState::default());
    let end = {
        let (client_rx, client_tx) = client.split();
        let (server_rx, server_tx) = server.split();
        tokio::select! {
            biased;
            _ = cut.changed() => End::CutAll,
            end = client_to_server(client_rx, server_tx, &conn, &shared) => end,
            end = server_to_client(server_rx, client_tx, &conn, &shared) => end,
        }
    };
    drop(client);
    drop(server);

    let lost = lock_conn(&conn)
        .lose_reply
        .map(|(_, and_refuse)| and_refuse);
    let mut fired = 0;
    {
        let mut state = shared.lock();
        let mut refuse = None;
        match end {
            End::Closed => {}
            End::CutAll | End::ReplyLost => state.stats.cuts += 1,
            End::CutBefore(and_refuse) => {
                state.stats.cuts += 1;
                state.stats.cut_before += 1;
                fired += 1;
                refuse = and_refuse;
            }
        }
        if let Some(and_refuse) = lost {
            state.stats.replies_lost += 1;
            fired += 1;
            refuse = refuse.or(and_refuse);
        }
        if let Some(d) = refuse {
            state.refuse_until = Some(Instant::now() + d);
        }
    }
    if fired > 0 {
        shared.fired.send_modify(|count| *count += fired);
    }
}

/// Where the client's side of the conversation is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientPhase {
    /// Untyped messages: SSL/GSS requests, then the startup message.
    Startup,
    /// Typed messages, forwarded after a look at them.
    Typed,
    /// A `lose_reply_to` trap fired on a `Bind`: forward up to its `Sync`.
    UntilSync,
    /// A `lose_reply_to` trap fired: nothing more is forwarded.
    Discard,
}

/// What the proxy reads of the client's messages on one connection.
struct ClientParser {
    phase: ClientPhase,
    /// Sync points forwarded: the startup message, then every `Q`, `S`, `F`
    /// (each is answered by exactly one `ReadyForQuery`).
    sync_points: u64,
    /// SQL text of every prepared statement, by name.
    statements: HashMap<String, String>,
}

/// What to do with one client message.
enum Action {
    Forward,
    Skip,
    End(End),
}

impl ClientParser {
    fn on_message(&mut self, msg: &[u8], conn: &Mutex<ConnState>, shared: &Shared) -> Action {
        if self.phase == ClientPhase::Startup {
            return match be_u32(msg, 4) {
                Some(SSL_REQUEST | GSSENC_REQUEST) => {
                    lock_conn(conn).encryption_asked = true;
                    Action::Forward
                }
                Some(CANCEL_REQUEST) => {
                    lock_conn(conn).opaque = true;
                    Action::Forward
                }
                _ => {
                    self.phase = ClientPhase::Typed;
                    self.sync_points = 1;
                    Action::Forward
                }
            };
        }
        if self.phase == ClientPhase::Discard {
            return Action::Skip;
        }
        let body = &msg[5..];
        match msg[0] {
            b'P' => {
                let (name, rest) = c_str(body);
                let (sql, _) = c_str(rest);
                self.statements.insert(name, sql);
                Action::Forward
            }
            b'B' if self.phase == ClientPhase::Typed => {
                let (_portal, rest) = c_str(body);
                let (statement, params) = c_str(rest);
                let sql = self.statements.get(&statement).map_or("", String::as_str);
                match shared.take_trap(sql, params) {
                    None => Action::Forward,
                    Some((TrapKind::CutBefore, and_refuse)) => {
                        Action::End(End::CutBefore(and_refuse))
                    }
                    Some((TrapKind::LoseReply, and_refuse)) => {
                        lock_conn(conn).lose_reply = Some((self.sync_points + 1, and_refuse));
                        self.phase = ClientPhase::UntilSync;
                        Action::Forward
                    }
                }
            }
            b'Q' if self.phase == ClientPhase::Typed => {
                let (sql, _) = c_str(body);
                self.sync_points += 1;
                match shared.take_trap(&sql, sql.as_bytes()) {
                    None => Action::Forward,
                    Some((TrapKind::CutBefore, and_refuse)) => {
                        Action::End(End::CutBefore(and_refuse))
                    }
                    Some((TrapKind::LoseReply, and_refuse)) => {
                        lock_conn(conn).lose_reply = Some((self.sync_points, and_refuse));
                        self.phase = ClientPhase::Discard;
                        Action::Forward
                    }
                }
            }
            // Each of these is answered by one `ReadyForQuery`, which ends
            // the run of a trapped `Bind`.
            b'S' | b'Q' | b'F' => {
                self.sync_points += 1;
                if self.phase == ClientPhase::UntilSync {
                    self.phase = ClientPhase::Discard;
                }
                Action::Forward
            }
            _ => Action::Forward,
        }
    }
}

async fn client_to_server(
    mut client: impl AsyncRead + Unpin,
    mut server: impl AsyncWrite + Unpin,
    conn: &Mutex<ConnState>,
    shared: &Shared,
) -> End {
    let mut parser = ClientParser {
        phase: ClientPhase::Startup,
        sync_points: 0,
        statements: HashMap::new(),
    };
    let mut buf = Vec::new();
    loop {
        if !read_more(&mut client, &mut buf).await {
            if parser.phase == ClientPhase::Discard {
                // A trapped statement is running: the connection is cut once
                // the server has answered, even if the client gave up.
                std::future::pending::<()>().await;
            }
            return End::Closed;
        }
        let mut out = Vec::new();
        let mut end = None;
        let mut at = 0;
        while at < buf.len() {
            let rest = &buf[at..];
            if lock_conn(conn).opaque {
                out.extend_from_slice(rest);
                at = buf.len();
                break;
            }
            let typed = parser.phase != ClientPhase::Startup;
            let len = match frame_len(rest, typed) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(()) => return End::Closed,
            };
            let msg = &rest[..len];
            at += len;
            match parser.on_message(msg, conn, shared) {
                Action::Forward => out.extend_from_slice(msg),
                Action::Skip => {}
                Action::End(e) => {
                    end = Some(e);
                    break;
                }
            }
        }
        buf.drain(..at);
        if let Some(end) = end {
            return end;
        }
        if !forward(&mut server, &out, shared).await {
            return End::Closed;
        }
    }
}

async fn server_to_client(
    mut server: impl AsyncRead + Unpin,
    mut client: impl AsyncWrite + Unpin,
    conn: &Mutex<ConnState>,
    shared: &Shared,
) -> End {
    // `ReadyForQuery` messages seen: the server is answering sync point `ready + 1`.
    let mut ready: u64 = 0;
    let mut buf = Vec::new();
    loop {
        if !read_more(&mut server, &mut buf).await {
            return End::Closed;
        }
        let mut out = Vec::new();
        let mut end = None;
        let mut at = 0;
        while at < buf.len() {
            let rest = &buf[at..];
            let lose_at = {
                let mut c = lock_conn(conn);
                if c.opaque {
                    out.extend_from_slice(rest);
                    at = buf.len();
                    break;
                }
                if c.encryption_asked {
                    c.encryption_asked = false;
                    match rest[0] {
                        answer @ (b'S' | b'G') => {
                            c.opaque = true;
                            out.push(answer);
                            at += 1;
                            continue;
                        }
                        answer @ b'N' => {
                            out.push(answer);
                            at += 1;
                            continue;
                        }
                        // Anything else is a typed message (an ErrorResponse).
                        _ => {}
                    }
                }
                c.lose_reply.map(|(sync_point, _)| sync_point)
            };
            let len = match frame_len(rest, true) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(()) => return End::Closed,
            };
            let swallowed = lose_at.is_some_and(|sync_point| ready + 1 >= sync_point);
            if !swallowed {
                out.extend_from_slice(&rest[..len]);
            }
            let msg_type = rest[0];
            at += len;
            if msg_type == b'Z' {
                ready += 1;
                if lose_at == Some(ready) {
                    end = Some(End::ReplyLost);
                    break;
                }
            }
        }
        buf.drain(..at);
        if !forward(&mut client, &out, shared).await {
            return End::Closed;
        }
        if let Some(end) = end {
            return end;
        }
    }
}

fn lock_conn(conn: &Mutex<ConnState>) -> MutexGuard<'_, ConnState> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Appends what `from` has to `buf`; false at end of stream or on error.
async fn read_more(from: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match from.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Writes `bytes` after the configured delay; false on error.
async fn forward(to: &mut (impl AsyncWrite + Unpin), bytes: &[u8], shared: &Shared) -> bool {
    if bytes.is_empty() {
        return true;
    }
    shared.delay().await;
    to.write_all(bytes).await.is_ok()
}

/// The length of the complete message at the front of `buf`, if it is all
/// there: a typed message is a type byte then an `Int32` length counting
/// itself and the body; an untyped one (startup phase) lacks the type byte.
fn frame_len(buf: &[u8], typed: bool) -> Result<Option<usize>, ()> {
    let header = usize::from(typed);
    let Some(len) = be_u32(buf, header) else {
        return Ok(None);
    };
    let len = usize::try_from(len).map_err(|_| ())?;
    if len < 4 || (!typed && len < 8) {
        return Err(());
    }
    Ok((buf.len() >= header + len).then_some(header + len))
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Splits a NUL-terminated string off the front of `buf` (all of `buf` if
/// it lacks the NUL).
fn c_str(buf: &[u8]) -> (String, &[u8]) {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    (text, buf.get(end + 1..).unwrap_or_default())
}

#[cfg(test)]
mod tests;
