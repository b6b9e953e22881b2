//! The deployment files, validated: deploy/kubernetes (every object against the Kubernetes
//! schemas, strict; the kustomize renders of the HPA and KEDA variants; the ScaledObject against
//! KEDA's CRD), compose.yaml (the Compose specification schema, health checks, limits, drain
//! timing; its nlpd health check run against this `nlpd serve`), `haproxy -c` on the balancer
//! config and `promtool check config` on compose's Prometheus config, plus the consistency
//! checks between them (probes, selectors, autoscaler targets, every NLPD_* key being a real
//! `nlpd serve` flag). The checks live in tests/deploy/check_manifests.py and run in the test venv
//! (scripts/test-venv.sh: kubernetes-validate, check-jsonschema, cloudcoil.models.keda, kubectl).

mod common;

use common::{missing, models, read_all, repo, under_ci, wait_timeout, KillOnDrop};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn kubernetes_manifests_and_compose_validate() {
    let repo = repo();
    let python = repo.join(".venv-test/bin/python");
    if !python.is_file() {
        missing(
            "deploy_manifests",
            &format!("{} (the test venv)", python.display()),
            "scripts/test-venv.sh",
        );
        return;
    }
    // A venv made from an older requirements file lacks the validators.
    let imports = Command::new(&python)
        .args([
            "-c",
            "import kubernetes_validate, check_jsonschema, cloudcoil.models.keda, jsonschema, yaml",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run .venv-test/bin/python");
    if !imports.status.success() {
        missing(
            "deploy_manifests",
            &format!(
                "kubernetes-validate / check-jsonschema / cloudcoil.models.keda in {} ({})",
                python.display(),
                String::from_utf8_lossy(&imports.stderr).trim()
            ),
            "scripts/test-venv.sh",
        );
        return;
    }
    let script = repo.join("tests/deploy/check_manifests.py");
    assert!(script.is_file(), "{} not found", script.display());

    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--nlpd")
        .arg(env!("CARGO_BIN_EXE_nlpd"))
        .arg("--repo")
        .arg(&repo)
        .arg("--models-dir")
        .arg(models());
    if under_ci() {
        // Missing kubectl, haproxy or promtool fail instead of being skipped.
        cmd.arg("--ci");
    }
    let mut check = KillOnDrop(
        cmd.current_dir(&repo)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            // The health check probe goes to 127.0.0.1 only; never through a proxy.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn .venv-test/bin/python"),
    );
    let out = read_all(check.0.stdout.take().unwrap());
    let err = read_all(check.0.stderr.take().unwrap());
    let status = wait_timeout(&mut check.0, CHECK_TIMEOUT);
    if status.is_none() {
        let _ = check.0.kill();
        let _ = check.0.wait();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    println!("--- check_manifests.py stdout ---\n{out}--- stderr ---\n{err}--- end ---");
    for line in out.lines().filter(|l| l.starts_with("!!! SKIPPING")) {
        eprintln!("{line}");
    }
    let status = status.unwrap_or_else(|| panic!("check_manifests.py ran past {CHECK_TIMEOUT:?}"));
    assert!(
        status.success(),
        "check_manifests.py failed ({status}):\n{}{}",
        out.lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect::<Vec<_>>()
            .join("\n"),
        if err.trim().is_empty() {
            String::new()
        } else {
            format!("\nstderr:\n{}", err.trim())
        }
    );
}
