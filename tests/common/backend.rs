//! The shared backends for tests of replicas: a throwaway PostgreSQL cluster (Debian's
//! `postgresql` package: `initdb` into a temporary directory, a free port, as the
//! `postgres` user when the tests run as root) and moto's standalone S3 server (PyPI
//! `moto[server]`, in a venv under the target dir) on a free loopback port. Started once
//! per test binary, on first use, and stopped when the test binary exits (each runs
//! under a shell that waits for the binary's end on a pipe).
//!
//! With `PROFILE_IMAGE_TEST_BACKEND=postgres`, every server the harness starts runs on
//! them (`--store`, `--blobs`, `--s3-endpoint`): the black-box suite then tests the
//! PostgreSQL + S3 mode. Each data dir gets a database and a key prefix of its own
//! (named after the data dir), so a restart on the same data dir finds its state and
//! tests do not see each other's.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The env var that selects the backend of the black-box suite.
pub const BACKEND_VAR: &str = "PROFILE_IMAGE_TEST_BACKEND";
pub const BUCKET: &str = "profile-image-tests";
/// moto accepts any credentials; object_store wants some.
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// Whether the suite runs on PostgreSQL + S3 (else on sled in the data dir).
pub fn suite_is_shared() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|v| v == "postgres")
}

/// The shared backends when the suite runs on them.
pub fn for_suite() -> Option<&'static Backends> {
    suite_is_shared().then(Backends::get)
}

pub struct Backends {
    pub pg_port: u16,
    pub s3_endpoint: String,
    pg_bin: PathBuf,
    /// Pipes whose closing (when the test binary exits) stops the servers.
    _lifelines: Mutex<Vec<(Child, ChildStdin)>>,
}

impl Backends {
    /// The backends of this test binary, started on first use.
    pub fn get() -> &'static Backends {
        static BACKENDS: OnceLock<Backends> = OnceLock::new();
        BACKENDS.get_or_init(Backends::start)
    }

    fn start() -> Backends {
        let pg_bin = postgres_bin_dir();
        let (pg_port, pg) = start_postgres(&pg_bin);
        let (s3_endpoint, moto) = start_moto();
        Backends {
            pg_port,
            s3_endpoint,
            pg_bin,
            _lifelines: Mutex::new(vec![pg, moto]),
        }
    }

    /// The name of the database and key prefix of a data dir.
    pub fn name_for(data_dir: &Path) -> String {
        let hash = blake3::hash(data_dir.as_os_str().as_encoded_bytes()).to_hex();
        format!("t{}", &hash[..16])
    }

    /// The URL of the data dir's database, created if it does not exist.
    pub fn database_for(&self, data_dir: &Path) -> String {
        let name = Self::name_for(data_dir);
        let exists = self.psql(
            "postgres",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        );
        if exists.trim() != "1" {
            // A concurrent creation of the same name fails harmlessly; checked below.
            let _ = self.psql("postgres", &format!("CREATE DATABASE {name}"));
        }
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.pg_port)
    }

    /// `psql -tAc SQL` on `database`; its output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.pg_bin.join("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-tAc", sql])
            .arg("-p")
            .arg(self.pg_port.to_string())
            .arg(database)
            .output()
            .expect("run psql");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The `serve` flags that put a data dir's state on these backends.
    pub fn serve_args(&self, data_dir: &Path) -> Vec<String> {
        vec![
            "--store".into(),
            self.database_for(data_dir),
            "--blobs".into(),
            format!("s3://{BUCKET}/{}", Self::name_for(data_dir)),
            "--s3-endpoint".into(),
            self.s3_endpoint.clone(),
        ]
    }
}

/// Debian keeps the server binaries out of PATH: /usr/lib/postgresql/NN/bin (newest).
fn postgres_bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/install-deps installs it)")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no /usr/lib/postgresql/NN/bin/initdb (scripts/install-deps installs it)")
        .1
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command` under a shell that stops it (and removes `cleanup`) once its stdin
/// closes, i.e. when this test binary exits however it ends.
fn run_until_we_exit(command: &Command, cleanup: &Path) -> (Child, ChildStdin) {
    let program = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "{program} >{log} 2>&1 & pid=$!; cat >/dev/null; kill -INT $pid; wait $pid; rm -rf {dir}",
        log = shell_quote(&cleanup.join("server.log").to_string_lossy()),
        dir = shell_quote(&cleanup.to_string_lossy()),
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a backend");
    let stdin = child.stdin.take().expect("stdin");
    (child, stdin)
}

fn shell_quote(raw: &str) -> String {
    format!("'{}'", raw.replace('\'', "'\\''"))
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not listen on {port} within 60 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_postgres(bin: &Path) -> (u16, (Child, ChildStdin)) {
    let dir = tempfile::Builder::new()
        .prefix("profile-image-pg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown the cluster dir to postgres");
    }
    let cluster = dir.join("cluster");
    let output = as_postgres(&bin.join("initdb"))
        .arg("-D")
        .arg(&cluster)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
        .output()
        .expect("run initdb");
    assert!(
        output.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let port = free_port();
    let mut server = as_postgres(&bin.join("postgres"));
    server
        .arg("-D")
        .arg(&cluster)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(&dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=400",
            // A throwaway cluster: durability is not what the tests check.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    let lifeline = run_until_we_exit(&server, &dir);
    wait_for_port(port, "PostgreSQL", &dir.join("server.log"));
    // Accepting TCP before it accepts queries: wait for a query to work.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new(bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-tAc",
                "SELECT 1",
                "-p",
            ])
            .arg(port.to_string())
            .arg("postgres")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL never answered a query"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (port, lifeline)
}

/// `<target dir>/moto-venv` with moto[server] installed; its bin dir.
fn moto_venv() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = tmp.parent().unwrap_or(tmp).join("moto-venv");
    let bin = venv.join("bin");
    if bin.join("moto_server").exists() {
        return bin;
    }
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let status = Command::new(python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv (Debian: apt-get install python3-venv)");
    assert!(status.success(), "create the moto venv");
    let status = Command::new(bin.join("pip"))
        .args([
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            "moto[server]",
        ])
        .status()
        .expect("pip install moto[server]");
    assert!(status.success(), "pip install moto[server] (needs PyPI)");
    bin
}

fn start_moto() -> (String, (Child, ChildStdin)) {
    let bin = moto_venv();
    let dir = tempfile::Builder::new()
        .prefix("profile-image-s3-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let port = free_port();
    let mut server = Command::new(bin.join("moto_server"));
    server.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let lifeline = run_until_we_exit(&server, &dir);
    wait_for_port(port, "moto_server", &dir.join("server.log"));
    let endpoint = format!("http://127.0.0.1:{port}");
    let create = format!(
        "import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='{BUCKET}')"
    );
    let output = Command::new(bin.join("python"))
        .args(["-c", &create])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "create the test bucket: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (endpoint, lifeline)
}
