//! The official `openai` Python client, unchanged, against the real `nlpd serve`: embeddings
//! (base64 and float, batches, `dimensions`), chat completions (plain and streamed), completions,
//! the model list, structured output (`response_format` with a JSON schema) and an error. The
//! checks live in tests/python/openai_client_check.py; the client is pinned in
//! tests/python/requirements.txt and installed by scripts/test-venv.sh.
//! The server is stopped with SIGTERM at the end and must shut down cleanly (exit 0).

mod common;

use common::{pack, python_check, serve, terminate, test_python, Tmp};

#[test]
fn official_openai_python_client_works_against_nlpd_serve() {
    let Some(python) = test_python("openai_client") else {
        return;
    };
    // The default embedding model and the default generator.
    for m in ["all-MiniLM-L6-v2", "smollm2-135m-instruct"] {
        if pack(m).is_none() {
            return;
        }
    }
    let tmp = Tmp::new("openai", "serve");
    let (mut server, url) = serve(&[], &tmp.0);
    python_check(&python, "openai_client_check.py", &url, &[], &[]);
    // Graceful shutdown: SIGTERM, in-flight work finishes, exit 0.
    terminate(&mut server);
    assert!(
        tmp.path("nlpd.db").is_file(),
        "nlpd serve keeps its default store in --data-dir"
    );
}
