//! Processes a fault-injection test owns and may kill: a PostgreSQL cluster,
//! a nats-server, and the service itself, each on free ports, each stopped
//! and cleaned up on drop. The machine's shared servers are never touched.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{eventually, poll};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the postgres user when we are root (Debian's
/// PostgreSQL refuses to run as root).
fn pg_command(tool: &str) -> Command {
    let path = pg_bindir().join(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn pg_bindir() -> PathBuf {
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .collect();
        dirs.sort();
        if let Some(d) = dirs.pop() {
            return d;
        }
    }
    PathBuf::from("/usr/bin")
}

pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    if is_root() {
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status();
    }
    dir
}

/// Waits until something listens on `port` (`up`), or nothing does.
pub async fn wait_for_port(port: u16, up: bool, within: Duration) {
    let state = if up { "open" } else { "closed" };
    eventually(within, &format!("port {port} {state}"), || async {
        let open = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        (open == up).then_some(())
    })
    .await;
}

/// A PostgreSQL cluster of the test's own.
pub struct OwnPostgres {
    dir: PathBuf,
    pub port: u16,
}

impl OwnPostgres {
    pub async fn start() -> OwnPostgres {
        OwnPostgres::init(&["-A", "trust"]).await
    }

    /// A cluster where `postgres` must give `password`, in clear text (so
    /// the server has the password in hand when it refuses a wrong one).
    pub async fn start_with_password(password: &str) -> OwnPostgres {
        let pw_dir = temp_dir("order-cache-pw");
        let pw_file = pw_dir.join("pw");
        std::fs::write(&pw_file, password).expect("password file");
        let pg = OwnPostgres::init(&[
            OsStr::new("-A"),
            OsStr::new("password"),
            OsStr::new("--pwfile"),
            pw_file.as_os_str(),
        ])
        .await;
        let _ = std::fs::remove_dir_all(&pw_dir);
        pg
    }

    async fn init<S: AsRef<OsStr>>(auth: &[S]) -> OwnPostgres {
        let dir = temp_dir("order-cache-pg");
        let port = free_port();
        let status = pg_command("initdb")
            .args(["-D"])
            .arg(&dir)
            .args(["-U", "postgres", "-E", "UTF8"])
            .args(auth)
            .stdout(Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        let pg = OwnPostgres { dir, port };
        pg.resume().await;
        pg
    }

    /// `postgres://…/{db}` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts (again) on the same port and data.
    pub async fn resume(&self) {
        let opts = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port
        );
        let status = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("server.log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(status.success(), "pg_ctl start failed");
        wait_for_port(self.port, true, Duration::from_secs(20)).await;
    }

    /// `pg_ctl stop -m immediate`: no shutdown checkpoint, connections cut.
    pub async fn stop_immediate(&self) {
        self.pg_ctl_stop();
        wait_for_port(self.port, false, Duration::from_secs(20)).await;
    }

    /// `pg_ctl stop -m immediate`, which waits for the server to exit.
    fn pg_ctl_stop(&self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }

    pub fn create_database(&self, name: &str) {
        let status = pg_command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .status()
            .expect("createdb");
        assert!(status.success());
    }
}

impl OwnPostgres {
    /// A streaming standby of `primary`, started: a base backup taken with
    /// `pg_basebackup -R` (so it streams from `primary` and stays read-only
    /// until promoted), reporting itself to the primary as `name`, the name
    /// `synchronous_standby_names` refers to.
    pub async fn standby_of(primary: &OwnPostgres, name: &str) -> OwnPostgres {
        let dir = temp_dir("order-cache-pg-standby");
        let status = pg_command("pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-X", "stream", "-R", "-c", "fast"])
            .args(["-d", &format!("application_name={name}")])
            .arg("-D")
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("pg_basebackup");
        assert!(status.success(), "pg_basebackup failed");
        // PostgreSQL refuses a data directory others may read; the backup
        // went into one made with the usual mode.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .expect("chmod the standby's data directory");
        }
        let standby = OwnPostgres {
            dir,
            port: free_port(),
        };
        standby.resume().await;
        standby
    }

    /// `pg_ctl promote`: a standby stops following its primary and takes
    /// writes. Returns once it does.
    pub fn promote(&self) {
        let status = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-w", "-t", "20", "promote"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl promote");
        assert!(status.success(), "pg_ctl promote failed");
    }

    /// Runs one SQL statement with `psql` (outside a transaction block, as
    /// `ALTER SYSTEM` needs) and returns what it printed, unaligned.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let output = pg_command("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U", "postgres", "-d", db, "-X", "-q", "-t", "-A", "-c", sql,
            ])
            .output()
            .expect("psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// A primary and a streaming standby of the test's own, replicating
/// synchronously: a commit returns only once the standby has its WAL, so
/// nothing acknowledged is lost when the standby is promoted.
pub struct OwnPostgresPair {
    pub primary: OwnPostgres,
    pub standby: OwnPostgres,
}

/// The name the standby gives itself (`application_name`), which the
/// primary's `synchronous_standby_names` names.
const STANDBY_NAME: &str = "standby";

impl OwnPostgresPair {
    /// Starts a primary with database `db`, a standby of it, and makes the
    /// standby synchronous; returns once the primary reports it so.
    pub async fn start(db: &str) -> OwnPostgresPair {
        let primary = OwnPostgres::start().await;
        primary.create_database(db);
        let standby = OwnPostgres::standby_of(&primary, STANDBY_NAME).await;
        // Set after the base backup, so the standby does not inherit it: once
        // promoted, it would wait on every commit for a standby it does not
        // have.
        primary.psql(
            "postgres",
            &format!("ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'"),
        );
        primary.psql("postgres", "SELECT pg_reload_conf()");
        let synchronous = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'";
        eventually(
            Duration::from_secs(20),
            "the standby synchronous",
            || async { (primary.psql("postgres", synchronous) == "1").then_some(()) },
        )
        .await;
        OwnPostgresPair { primary, standby }
    }

    /// Both hosts, primary first, with `target_session_attrs=read-write`:
    /// the client connects to whichever takes writes.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // No waiting on the port here: a panic in a drop during a panic
        // aborts, and pg_ctl has waited for the server to exit.
        self.pg_ctl_stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A nats-server with JetStream of the test's own.
pub struct OwnNats {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// More command-line arguments (authentication).
    args: Vec<String>,
}

fn nats_server_bin() -> PathBuf {
    for p in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("nats-server")
}

impl OwnNats {
    pub async fn start() -> OwnNats {
        OwnNats::start_with(&[]).await
    }

    /// A nats-server with more arguments, e.g. `["--user", "u", "--pass", "p"]`.
    pub async fn start_with(args: &[&str]) -> OwnNats {
        let mut nats = OwnNats {
            dir: temp_dir("order-cache-nats"),
            port: free_port(),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        nats.resume().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and storage.
    pub async fn resume(&mut self) {
        let child = Command::new(nats_server_bin())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        self.child = Some(child);
        wait_for_port(self.port, true, Duration::from_secs(20)).await;
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        self.kill_child();
        wait_for_port(self.port, false, Duration::from_secs(20)).await;
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        // No waiting on the port: the process is reaped, and a panic in a
        // drop during a panic aborts.
        self.kill_child();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JetStream cluster of the test's own: nats-servers named `n1`, `n2`, …
/// on loopback, each with its own client port, route port and storage,
/// routed to each other.
pub struct OwnNatsCluster {
    dir: PathBuf,
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    name: String,
    port: u16,
    route_port: u16,
    child: Option<Child>,
}

impl OwnNatsCluster {
    /// Starts `size` nodes; returns once each accepts clients (JetStream
    /// may still be electing its leader: see [`OwnNatsCluster::wait_jetstream`]).
    pub async fn start(size: usize) -> OwnNatsCluster {
        let mut cluster = OwnNatsCluster {
            dir: temp_dir("order-cache-nats-cluster"),
            nodes: (1..=size)
                .map(|i| ClusterNode {
                    name: format!("n{i}"),
                    port: free_port(),
                    route_port: free_port(),
                    child: None,
                })
                .collect(),
        };
        for i in 0..size {
            cluster.resume(i).await;
        }
        cluster
    }

    /// Every node's client URL, comma separated (as `NATS_URL` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node whose server name is `name` (as JetStream names a leader).
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Starts node `i` (again) on the same ports and storage.
    pub async fn resume(&mut self, i: usize) {
        let routes = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[i];
        let store = self.dir.join(&node.name);
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["--server_name", &node.name, "-js", "-sd"])
            .arg(&store)
            .args(["--cluster_name", "order-cache-test"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.route_port),
            ])
            .args(["--routes", &routes])
            .arg("-l")
            .arg(self.dir.join(format!("{}.log", node.name)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        let port = node.port;
        self.nodes[i].child = Some(child);
        wait_for_port(port, true, Duration::from_secs(20)).await;
    }

    /// SIGKILLs node `i`.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_for_port(self.nodes[i].port, false, Duration::from_secs(20)).await;
    }

    /// Waits until the cluster can place a stream on every node (its meta
    /// leader is elected and knows each peer): a probe stream with one
    /// replica per node is created and deleted.
    pub async fn wait_jetstream(&self, js: &async_nats::jetstream::Context, within: Duration) {
        let probe = async_nats::jetstream::stream::Config {
            name: "CLUSTER_PROBE".into(),
            subjects: vec!["cluster.probe".into()],
            num_replicas: self.nodes.len(),
            ..Default::default()
        };
        let every = Duration::from_millis(100);
        poll(within, every, || async {
            js.create_stream(probe.clone()).await?;
            let _ = js.delete_stream("CLUSTER_PROBE").await;
            Ok::<_, async_nats::jetstream::context::CreateStreamError>(())
        })
        .await
        .unwrap_or_else(|e| panic!("JetStream cluster not ready: {e}\n{}", self.logs()));
    }

    /// The last lines of every node's log, to explain a failure.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(self.dir.join(format!("{}.log", n.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {}:\n{}", n.name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for OwnNatsCluster {
    fn drop(&mut self) {
        // No waiting on ports here: a panic in a drop during a panic aborts.
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `server` example as a separate process, so it can be SIGKILLed.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    log: Option<PathBuf>,
}

/// Where cargo put the `server` example for this test build.
pub fn server_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/api-<hash> → target/<profile>/examples/server
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("examples").join("server");
    assert!(
        bin.exists(),
        "build the server example first: cargo build --example server"
    );
    bin
}

impl ServerProcess {
    pub fn spawn(
        database_url: &str,
        nats_url: &str,
        ingest: &order_cache::IngestConfig,
    ) -> ServerProcess {
        ServerProcess::spawn_with(database_url, nats_url, ingest, &[], None)
    }

    /// [`ServerProcess::spawn`] with more environment, writing its stdout
    /// and stderr to `log` when given.
    pub fn spawn_with(
        database_url: &str,
        nats_url: &str,
        ingest: &order_cache::IngestConfig,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> ServerProcess {
        ServerProcess::spawn_command(
            Command::new(server_bin()),
            database_url,
            nats_url,
            ingest,
            env,
            log,
        )
    }

    /// [`ServerProcess::spawn_with`] started with the soft limit on open
    /// files at `soft` and the hard limit as inherited, as a login shell or
    /// a service manager often starts a process (1,024 is a common
    /// default). `sh` sets the limit and then `exec`s the server, so the
    /// process is still the server itself.
    pub fn spawn_with_soft_nofile(
        soft: u64,
        database_url: &str,
        nats_url: &str,
        ingest: &order_cache::IngestConfig,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> ServerProcess {
        let mut sh = Command::new("sh");
        sh.args(["-c", r#"ulimit -S -n "$0" && exec "$@""#])
            .arg(soft.to_string())
            .arg(server_bin());
        ServerProcess::spawn_command(sh, database_url, nats_url, ingest, env, log)
    }

    fn spawn_command(
        mut command: Command,
        database_url: &str,
        nats_url: &str,
        ingest: &order_cache::IngestConfig,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> ServerProcess {
        let port = free_port();
        let output = || match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("log file"),
            ),
            None => Stdio::null(),
        };
        let child = command
            .env("DATABASE_URL", database_url)
            .env("NATS_URL", nats_url)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ORDERS_STREAM", &ingest.stream)
            .env("ORDERS_SUBJECT", &ingest.subject)
            .env("ORDERS_CONSUMER", &ingest.consumer)
            .env("ORDERS_DLQ_SUBJECT", &ingest.dlq_subject)
            .env("BATCH_SIZE", ingest.batch_size.to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("spawn server");
        ServerProcess {
            child,
            port,
            log: log.map(Path::to_path_buf),
        }
    }

    pub fn client(&self) -> crate::helpers::http_client::Client {
        crate::helpers::http_client::Client::new(([127, 0, 0, 1], self.port).into())
    }

    /// The process id, e.g. to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the server wrote, when it was spawned with a log file.
    pub fn output(&self) -> String {
        self.log
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Polls `GET path` until it answers `want`; returns how long that took.
    /// Panics, with the server's output, if it exits or `within` passes.
    pub async fn wait_status(&mut self, path: &str, want: u16, within: Duration) -> Duration {
        let started = Instant::now();
        let client = self.client();
        let every = Duration::from_millis(50);
        let answered = poll(within, every, || {
            let running = self.is_running();
            let client = client.clone();
            async move {
                match client.get(path).await {
                    Ok((status, _)) if status == want => Ok(Ok(())),
                    _ if !running => Ok(Err("server exited")),
                    Ok((status, _)) => Err(format!("status {status}")),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        match answered {
            Ok(Ok(())) => started.elapsed(),
            Ok(Err(exited)) => panic!("{exited}:\n{}", self.output()),
            Err(e) => panic!("{path} never answered {want}: {e}\n{}", self.output()),
        }
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&mut self, within: Duration) -> Duration {
        self.wait_status("/readyz", 200, within).await
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `within` for the exit.
    pub async fn terminate(mut self, within: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let every = Duration::from_millis(20);
        let exited = poll(within, every, || {
            let status = self.child.try_wait();
            async move { status.ok().flatten() }
        })
        .await;
        exited.ok().map(|status| (status, started.elapsed()))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
