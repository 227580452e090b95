//! The generated Python client in clients/python: its committed stubs match the .proto
//! (`generate.sh --check`) and its smoke test passes against the real server.
//!
//! Needs `python3` (3.10+) and PyPI: the first run creates a virtualenv under
//! `target/python-client-venv` and pip-installs clients/python/requirements.txt into it;
//! later runs reuse it until requirements.txt or the interpreter changes (a stamp file
//! records both). Set `PYTHON` to use another interpreter. When `python3 -m venv` is not
//! available (Debian without python3-venv), the requirements are installed with
//! `pip install --target` and used through PYTHONPATH instead. Nothing is skipped: no
//! Python, no PyPI or a failing script fails the test.

mod common;

use common::*;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const STAMP: &str = "profile-image-requirements.stamp";

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python")
}

/// `<target dir>/python-client-venv` (CARGO_TARGET_TMPDIR is `<target dir>/tmp`, so this
/// follows CARGO_TARGET_DIR).
fn env_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("python-client-venv")
}

/// An interpreter with requirements.txt importable.
#[derive(Clone, Debug)]
struct PythonEnv {
    python: PathBuf,
    /// Set when the packages were installed with `pip install --target`.
    pythonpath: Option<PathBuf>,
}

impl PythonEnv {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.python);
        self.configure(&mut command);
        command
    }

    fn configure(&self, command: &mut Command) {
        command
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
        if let Some(path) = &self.pythonpath {
            command.env("PYTHONPATH", path);
        }
    }
}

/// Runs `command`; panics with its output unless it exits 0.
fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}): {command:?}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
    output
}

fn base_python() -> OsString {
    std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into())
}

/// The venv, created (or re-created when stale) once per process.
fn python_env() -> PythonEnv {
    static ENV: OnceLock<PythonEnv> = OnceLock::new();
    ENV.get_or_init(create_python_env).clone()
}

fn create_python_env() -> PythonEnv {
    let base = base_python();
    // The real interpreter (not a pyenv shim) and its version, for the stamp.
    let probe = run(
        "python3 (needed by tests/python_client.rs; set PYTHON to choose another)",
        Command::new(&base).args([
            "-c",
            "import sys; print(sys.executable); print(sys.version.split()[0])",
        ]),
    );
    let probe = String::from_utf8_lossy(&probe.stdout).into_owned();
    let mut lines = probe.lines();
    let executable = PathBuf::from(lines.next().unwrap_or_default().trim());
    let version = lines.next().unwrap_or_default().trim().to_owned();
    assert!(
        executable.is_file(),
        "python3 reported no usable sys.executable: {probe:?}"
    );

    let requirements = client_dir().join("requirements.txt");
    let requirements_bytes =
        fs::read(&requirements).unwrap_or_else(|e| panic!("read {}: {e}", requirements.display()));
    let stamp = format!(
        "requirements.txt blake3 {}\npython {} {}\n",
        blake3::hash(&requirements_bytes).to_hex(),
        executable.display(),
        version,
    );

    let dir = env_dir();
    if let Some(env) = existing_env(&dir, &stamp, &executable) {
        return env;
    }

    // Build beside the final place, then rename it in: a concurrent `cargo test` never
    // sees a half-installed environment. (Only bin/python is used, which works after a
    // rename: the interpreter finds pyvenv.cfg next to itself.)
    let staging = dir.with_file_name(format!("python-client-venv.{}.tmp", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(staging.parent().expect("target dir")).expect("create target dir");

    let venv = Command::new(&executable)
        .arg("-m")
        .arg("venv")
        .arg(&staging)
        .output()
        .unwrap_or_else(|e| panic!("run {} -m venv: {e}", executable.display()));
    let mode = if venv.status.success() {
        let env = PythonEnv {
            python: staging.join("bin/python"),
            pythonpath: None,
        };
        let mut pip = env.command();
        pip.args(["-m", "pip", "install", "--no-input", "-q", "-r"])
            .arg(&requirements);
        run(
            "pip install -r clients/python/requirements.txt (into the venv)",
            &mut pip,
        );
        "venv"
    } else {
        // No venv module (Debian's python3-venv missing): install into a plain directory.
        eprintln!(
            "python_client: `python3 -m venv` failed ({}), falling back to pip install --target:\n{}",
            venv.status,
            String::from_utf8_lossy(&venv.stderr)
        );
        let _ = fs::remove_dir_all(&staging);
        let mut pip = Command::new(&executable);
        pip.env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .args(["-m", "pip", "install", "--no-input", "-q", "--target"])
            .arg(staging.join("site-packages"))
            .arg("-r")
            .arg(&requirements);
        run(
            "pip install --target (python3 -m venv is unavailable; install python3-venv or pip)",
            &mut pip,
        );
        "target"
    };
    fs::write(staging.join(STAMP), format!("{stamp}mode {mode}\n")).expect("write stamp");

    let _ = fs::remove_dir_all(&dir);
    if fs::rename(&staging, &dir).is_err() {
        // Another process put its environment there first; use it if it is current.
        let _ = fs::remove_dir_all(&staging);
    }
    existing_env(&dir, &stamp, &executable).unwrap_or_else(|| {
        panic!(
            "{}: environment missing or stale right after creating it",
            dir.display()
        )
    })
}

/// The environment in `dir` if its stamp says it was made from `stamp`.
fn existing_env(dir: &Path, stamp: &str, executable: &Path) -> Option<PythonEnv> {
    let found = fs::read_to_string(dir.join(STAMP)).ok()?;
    let mode = found.strip_prefix(stamp)?.trim();
    let env = match mode {
        "mode venv" => PythonEnv {
            python: dir.join("bin/python"),
            pythonpath: None,
        },
        "mode target" => PythonEnv {
            python: executable.to_owned(),
            pythonpath: Some(dir.join("site-packages")),
        },
        _ => return None,
    };
    env.python.exists().then_some(env)
}

/// A string of a command's output, printed so a failing test shows it.
fn show(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("--- {what} stdout\n{stdout}");
    println!(
        "--- {what} stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn committed_stubs_match_the_proto() {
    let env = python_env();
    let mut check = Command::new("bash");
    check
        .arg(client_dir().join("generate.sh"))
        .arg("--check")
        .env("PYTHON", &env.python);
    env.configure(&mut check);
    let output = check.output().expect("run generate.sh --check");
    show("generate.sh --check", &output);
    assert!(
        output.status.success(),
        "clients/python stubs are stale or could not be generated ({}); run clients/python/generate.sh",
        output.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_test_passes_against_the_server() {
    let env = tokio::task::spawn_blocking(python_env)
        .await
        .expect("python env");
    let server = Server::start().await;
    let mut smoke = env.command();
    smoke
        .current_dir(client_dir())
        .arg("smoke_test.py")
        .arg("--target")
        .arg(server.addr.to_string())
        .arg("--corpus")
        .arg(corpus(""));
    let output = tokio::task::spawn_blocking(move || smoke.output())
        .await
        .expect("join")
        .expect("run smoke_test.py");
    let stdout = show("smoke_test.py", &output);
    if !output.status.success() {
        eprintln!("--- server log\n{}", server.logs().join("\n"));
    }
    assert!(
        output.status.success(),
        "smoke_test.py failed ({})",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" passed, 0 failed") && !last.starts_with("0 passed"),
        "unexpected summary line {last:?}"
    );
}
