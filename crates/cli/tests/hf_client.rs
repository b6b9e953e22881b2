//! Hugging Face's `huggingface_hub.InferenceClient`, unchanged, against the real `nlpd serve`
//! (what LangChain's and LlamaIndex's Hugging Face / TEI integrations call): feature-extraction
//! and sentence-similarity on `POST /`, and on `POST /models/{name}` text-classification
//! (`top_k`, `function_to_apply`), token-classification (`aggregation_strategy`) and
//! text-generation (plain, details, streamed, the retry without unsupported parameters); TEI's
//! `/similarity` and `/decode`; the errors. The checks live in tests/python/hf_client_check.py;
//! the client is pinned in tests/python/requirements.txt and installed by scripts/test-venv.sh.
//! The server is stopped with SIGTERM at the end (no drain delay) and must exit 0.

mod common;

use common::{default_pack, python_check, serve, terminate, test_python, Tmp};
use std::ffi::OsStr;

#[test]
fn hugging_face_inference_client_works_against_nlpd_serve() {
    let Some(python) = test_python("hf_client") else {
        return;
    };
    if !default_pack() {
        return;
    }
    let tmp = Tmp::new("hf", "serve");
    let (mut server, url) = serve(&[], &tmp.path("data"));
    // No Hugging Face token or settings of the machine's user, no telemetry.
    let hf_home = tmp.path("hf-home");
    python_check(
        &python,
        "hf_client_check.py",
        &url,
        &[
            ("HF_HOME", hf_home.as_os_str()),
            ("HF_HUB_DISABLE_TELEMETRY", OsStr::new("1")),
        ],
        &["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"],
    );
    // Graceful shutdown: SIGTERM, in-flight work finishes, exit 0.
    terminate(&mut server);
    assert!(
        tmp.path("data/nlpd.db").is_file(),
        "nlpd serve keeps its default store in --data-dir"
    );
}
