//! Crash safety of saving (issue #8): a child process saves two different models over the
//! same path in a loop and is SIGKILLed at pseudo-random moments, 40 times. After every
//! kill the file at the path is, byte for byte, one of the two models, and it parses; the
//! temporary files killed saves leave behind never break the next save and are removed
//! by it.
//!
//! The child is this test binary itself, re-run with `VARAD_CRASH_CHILD_DIR` set and
//! filtered to `child_saver`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use varad::model_file::LoadOptions;
use varad::Model;

const CHILD_ENV: &str = "VARAD_CRASH_CHILD_DIR";
const TRIALS: usize = 40;

/// The child's body: load models A and B from the folder, then save them alternately over
/// `model.varad` until killed. Writes `ready-<pid>` once the first save has completed. Does
/// nothing in an ordinary test run.
#[test]
fn child_saver() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let models = [
        Model::load(&dir.join("a.varad"), &LoadOptions::default()).unwrap(),
        Model::load(&dir.join("b.varad"), &LoadOptions::default()).unwrap(),
    ];
    let target = dir.join("model.varad");
    models[0].save(&target).unwrap();
    // A file, not stdout: the test harness may buffer or capture the child's output.
    std::fs::write(dir.join(format!("ready-{}", std::process::id())), b"").unwrap();
    for k in 1.. {
        models[k % 2].save(&target).unwrap();
    }
}

/// Temporary files of saves over `model.varad` in `dir`.
fn temps(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(".model.varad.") && n.ends_with(".tmp")
        })
        .collect()
}

#[test]
fn killed_saves_leave_the_old_or_the_new_model() {
    let dir = std::env::temp_dir().join(format!("varad-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // Two models that differ in every tensor (different seeds), saved as references.
    let mut config = common::tiny_config();
    config.seed = 1;
    Model::new(config.clone())
        .unwrap()
        .save(&dir.join("a.varad"))
        .unwrap();
    config.seed = 2;
    Model::new(config)
        .unwrap()
        .save(&dir.join("b.varad"))
        .unwrap();
    let a = std::fs::read(dir.join("a.varad")).unwrap();
    let b = std::fs::read(dir.join("b.varad")).unwrap();
    assert_ne!(a, b);
    let channels: Vec<usize> = Model::load(&dir.join("a.varad"), &LoadOptions::default())
        .unwrap()
        .layout()
        .iter()
        .map(|l| l.channels)
        .collect();

    let target = dir.join("model.varad");
    let mut state: u64 = 0x5eed_c0de;
    let (mut saw_a, mut saw_b, mut killed_mid_write, mut stale_seen) = (0, 0, 0, 0);
    for trial in 0..TRIALS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // A kill 0 to 40 ms after the first save: a tiny model saves in about a
        // millisecond, so this lands anywhere in the loop (mid-write included).
        let delay = Duration::from_micros(state % 40_000);
        stale_seen += temps(&dir).len();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_saver", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ready = dir.join(format!("ready-{}", child.id()));
        let started = Instant::now();
        while !ready.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("trial {trial}: the child ended before it was ready: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "trial {trial}: the child never got ready"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::fs::remove_file(&ready).unwrap();
        // The child's first save has removed what earlier (dead) children left.
        let own = format!(".{}.tmp", child.id());
        let stale: Vec<PathBuf> = temps(&dir)
            .into_iter()
            .filter(|p| !p.to_string_lossy().ends_with(&own))
            .collect();
        assert!(stale.is_empty(), "trial {trial}: stale files {stale:?}");
        std::thread::sleep(delay);
        // SIGKILL: no destructor, no flush, no cleanup runs in the child.
        child.kill().unwrap();
        child.wait().unwrap();
        if !temps(&dir).is_empty() {
            killed_mid_write += 1;
        }

        let bytes = std::fs::read(&target).unwrap();
        if bytes == a {
            saw_a += 1;
        } else if bytes == b {
            saw_b += 1;
        } else {
            panic!(
                "trial {trial}: {} holds {} bytes that are neither model",
                target.display(),
                bytes.len()
            );
        }
        varad::model_file::parse(&bytes, &channels)
            .unwrap_or_else(|e| panic!("trial {trial}: {e}"));
        if trial == 0 || trial == TRIALS - 1 {
            Model::load(&target, &LoadOptions::default()).unwrap();
        }
    }
    eprintln!(
        "{TRIALS} kills: file was A {saw_a} times, B {saw_b} times; {killed_mid_write} kills \
         left a temporary file, {stale_seen} stale files seen before the next child saved"
    );
    assert!(saw_a > 0 && saw_b > 0, "the kills all landed in one phase");

    // A save by a live process removes every temporary file of dead ones.
    std::fs::write(dir.join(".model.varad.999999999.tmp"), b"junk").unwrap();
    Model::load(&dir.join("a.varad"), &LoadOptions::default())
        .unwrap()
        .save(&target)
        .unwrap();
    assert_eq!(
        temps(&dir),
        Vec::<PathBuf>::new(),
        "stale temporary files remain"
    );
    assert_eq!(std::fs::read(&target).unwrap(), a);
    let _ = std::fs::remove_dir_all(&dir);
}
