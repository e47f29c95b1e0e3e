//! A private PostgreSQL server for tests that stop, crash and restart the
//! database under a client.
//!
//! [`PgServer::start`] runs `initdb` into a fresh directory under the
//! system's temporary directory and starts a server on its own port,
//! listening on 127.0.0.1 only, with trust authentication for the superuser
//! `postgres` and a database `test`. Dropping it stops the server (in
//! immediate mode) and removes the directory.
//!
//! The binaries come from the highest version under
//! `/usr/lib/postgresql/*/bin`. PostgreSQL refuses to run as root: when the
//! tests run as root, every server binary runs as the `postgres` OS user
//! (through `runuser`), which owns the directory.
//!
//! `fsync` stays on unless a setting turns it off, so a server stopped in
//! [`StopMode::Immediate`] recovers everything it acknowledged.

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::process::Command;

/// Where the PostgreSQL versions are installed, one directory per version.
const INSTALL_ROOT: &str = "/usr/lib/postgresql";
/// The OS user that runs the server when the tests run as root.
const OS_USER: &str = "postgres";
/// Ports are picked below Linux's ephemeral range (32768 and up by default),
/// so a port left free while the server is stopped is not handed to some
/// client socket before the server starts again.
const PORTS: std::ops::Range<u16> = 20_000..32_000;
/// Attempts at starting on a fresh port when the port was taken meanwhile.
const PORT_ATTEMPTS: usize = 8;
/// Seconds `pg_ctl` waits for a start or a stop.
const PG_CTL_TIMEOUT: &str = "120";

/// How [`PgServer::stop`] stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// A clean shutdown: sessions are ended and a checkpoint is written.
    Fast,
    /// A crash: every server process quits at once; the next start runs
    /// crash recovery from the WAL.
    Immediate,
}

/// A PostgreSQL server of its own, in a temporary directory, for one test.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    /// Holds `data/` (the cluster), `log` and the Unix socket.
    dir: PathBuf,
    port: u16,
    /// Run the server binaries as [`OS_USER`] (the tests run as root).
    as_os_user: bool,
}

impl PgServer {
    /// Creates and starts a server with the default settings; see
    /// [`PgServer::start_with`].
    pub async fn start() -> Result<PgServer, String> {
        Self::start_with(&[]).await
    }

    /// Creates a cluster in a fresh temporary directory, adds `settings`
    /// (name, value) to its `postgresql.conf` (so they hold across restarts,
    /// e.g. `("max_connections", "200")` or `("fsync", "off")`), starts it on
    /// a free port and creates the database `test`.
    ///
    /// The error tells what failed, with the end of the server log.
    pub async fn start_with(settings: &[(&str, &str)]) -> Result<PgServer, String> {
        let as_os_user = running_as_root()?;
        let bin = bin_dir()?;
        let dir = make_dir(as_os_user)?;
        // From here on, dropping `server` cleans up after a failure.
        let mut server = PgServer {
            bin,
            dir,
            port: 0,
            as_os_user,
        };
        let data = server.data_dir();
        server
            .run(
                "initdb",
                &[
                    "-D",
                    path_str(&data)?,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            .await?;
        server.configure(settings)?;
        server.start_on_free_port().await?;
        let port = server.port.to_string();
        server
            .run(
                "createdb",
                &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "test"],
            )
            .await?;
        Ok(server)
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `database` as the superuser `postgres`:
    /// `postgres://postgres@127.0.0.1:PORT/DATABASE?sslmode=disable`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Stops the server and waits until it is down.
    pub async fn stop(&self, mode: StopMode) -> Result<(), String> {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-m",
                mode,
                "-w",
                "-t",
                PG_CTL_TIMEOUT,
                "stop",
            ],
        )
        .await
        .map(drop)
    }

    /// Starts the stopped server again, on the same port, and waits until it
    /// accepts connections (after crash recovery, following an immediate
    /// stop). Fails if the port has been taken meanwhile.
    pub async fn start_again(&self) -> Result<(), String> {
        self.pg_ctl_start().await.map_err(|failure| failure.message)
    }

    /// Stops the server in `mode`, then starts it again.
    pub async fn restart(&self, mode: StopMode) -> Result<(), String> {
        self.stop(mode).await?;
        self.start_again().await
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The server's whole log, across every start.
    pub fn log(&self) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(&log).into_owned()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Appends the listening setup and `settings` to `postgresql.conf`.
    fn configure(&self, settings: &[(&str, &str)]) -> Result<(), String> {
        use std::io::Write;

        let socket_dir = path_str(&self.dir)?;
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = {}\n",
            quote(socket_dir)
        );
        for (name, value) in settings {
            conf.push_str(&format!("{name} = {}\n", quote(value)));
        }
        let path = self.data_dir().join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(conf.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Starts the server on a free port, trying other ports while the
    /// chosen one turns out to be taken.
    async fn start_on_free_port(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            match self.pg_ctl_start().await {
                Ok(()) => return Ok(()),
                Err(failure) if failure.port_taken => last = failure.message,
                Err(failure) => return Err(failure.message),
            }
        }
        Err(format!(
            "no free port after {PORT_ATTEMPTS} attempts; last: {last}"
        ))
    }

    async fn pg_ctl_start(&self) -> Result<(), StartFailure> {
        let log_path = self.log_path();
        let log_len = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let data = self.data_dir();
        let port = format!("-p {}", self.port);
        let args = [
            "-D",
            path_str(&data).map_err(StartFailure::other)?,
            "-l",
            path_str(&log_path).map_err(StartFailure::other)?,
            "-o",
            &port,
            "-w",
            "-t",
            PG_CTL_TIMEOUT,
            "start",
        ];
        self.run("pg_ctl", &args)
            .await
            .map(drop)
            .map_err(|message| {
                let log = std::fs::read(&log_path).unwrap_or_default();
                let new_lines = log
                    .get(usize::try_from(log_len).unwrap_or(0)..)
                    .unwrap_or_default();
                StartFailure {
                    port_taken: String::from_utf8_lossy(new_lines)
                        .contains("Address already in use"),
                    message,
                }
            })
    }

    /// Runs the server binary `program`; its output, or an error with the
    /// output and the end of the server log.
    async fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let path = self.bin.join(program);
        let mut command = if self.as_os_user {
            let mut command = Command::new("runuser");
            command.args(["-u", OS_USER, "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        // The server user may not be allowed into the current directory.
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let shown = format!("{} {}", path.display(), args.join(" "));
        let output = command
            .output()
            .await
            .map_err(|e| format!("cannot run {shown}: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        Err(format!(
            "{shown} failed ({}):\n{stdout}{}\n--- server log (end) ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log_tail(30)
        ))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let pg_ctl = self.bin.join("pg_ctl");
            let mut command = if self.as_os_user {
                let mut command = std::process::Command::new("runuser");
                command.args(["-u", OS_USER, "--"]).arg(pg_ctl);
                command
            } else {
                std::process::Command::new(pg_ctl)
            };
            let _ = command
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT, "stop"])
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Why `pg_ctl start` failed.
struct StartFailure {
    /// The server could not listen on its port: another process has it.
    port_taken: bool,
    message: String,
}

impl StartFailure {
    fn other(message: String) -> StartFailure {
        StartFailure {
            port_taken: false,
            message,
        }
    }
}

/// Whether this process runs as root (effective user id 0).
fn running_as_root() -> Result<bool, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    // "Uid:\t<real>\t<effective>\t<saved>\t<filesystem>"
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .ok_or("no Uid line in /proc/self/status")?;
    Ok(effective == "0")
}

/// `/usr/lib/postgresql/<highest version>/bin`.
fn bin_dir() -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(INSTALL_ROOT)
        .map_err(|e| format!("no PostgreSQL installed under {INSTALL_ROOT}: {e}"))?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.to_owned();
            let numbers: Vec<u32> = version
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((numbers, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no {INSTALL_ROOT}/<version>/bin/pg_ctl found"))
}

/// Creates a fresh directory for one server, owned by the OS user that will
/// run it. Its path is short: it holds the server's Unix socket, whose path
/// must stay within about 100 bytes.
fn make_dir(as_os_user: bool) -> Result<PathBuf, String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let temp = std::env::temp_dir();
    let parent = if temp.as_os_str().len() <= 40 {
        temp
    } else {
        PathBuf::from("/tmp")
    };
    let owner = if as_os_user {
        Some(os_user_ids()?)
    } else {
        None
    };
    for _ in 0..16 {
        let dir = parent.join(format!(
            "pgtest-{}-{}-{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            random() as u32
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
        if let Some((uid, gid)) = owner
            && let Err(e) = std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("cannot hand {} to {OS_USER}: {e}", dir.display()));
        }
        return Ok(dir);
    }
    Err(format!(
        "cannot create a fresh directory in {}",
        parent.display()
    ))
}

/// The user and group ids of [`OS_USER`], from `/etc/passwd`.
fn os_user_ids() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            // name:password:uid:gid:...
            let mut fields = line.split(':');
            if fields.next()? != OS_USER {
                return None;
            }
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or_else(|| {
            format!("running as root, but there is no OS user {OS_USER} to run PostgreSQL as")
        })
}

/// A port in [`PORTS`] that nothing listens on right now.
fn free_port() -> Result<u16, String> {
    let span = u64::from(PORTS.end - PORTS.start);
    for _ in 0..200 {
        let port = PORTS.start + u16::try_from(random() % span).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(format!("no free port in {PORTS:?}"))
}

/// A random number, from the standard library's randomly seeded hasher.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A `postgresql.conf` string literal.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("path is not UTF-8: {}", path.display()))
}

#[cfg(test)]
mod tests;
