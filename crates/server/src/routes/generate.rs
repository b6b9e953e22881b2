//! Generation routes: `/v1/chat/completions` and `/v1/completions` (OpenAI shapes, `stream: true`
//! as server-sent events) and `/v1/explain` (code explanation).

use super::respond;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::pipeline::deadline;
use crate::state::{AppState, Served, Streamed};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use nlpd_engine::generate::{
    ChatMessage, FinishReason, GenerateOptions, Generation, OutputConstraint,
};
use nlpd_runtime::cache::{
    generation_is_deterministic, generation_key, CachedValue, GenPrompt, GenResult,
};
use nlpd_runtime::prompts::{explain_messages, Detail};
use nlpd_runtime::{metrics as m, Stats};
use nlpd_runtime::{GenEvent, GenInput};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;

/// `max_tokens` of `/v1/chat/completions` when the request leaves it out.
pub(crate) const CHAT_MAX_TOKENS: usize = 256;
/// `max_tokens` of `/v1/completions` when the request leaves it out (OpenAI's default).
pub(crate) const COMPLETION_MAX_TOKENS: usize = 16;
/// `temperature` of the OpenAI routes when the request leaves it out (OpenAI's default).
pub(crate) const OPENAI_TEMPERATURE: f64 = 1.0;
/// `temperature` of `/v1/explain` when the request leaves it out: greedy.
pub(crate) const EXPLAIN_TEMPERATURE: f64 = 0.0;

/// The new tokens a generation may produce: the request's count, else the route's default cut to
/// `limit` (`--max-new-tokens`). The error completes "`<field>` ..." for the caller's field name.
pub(crate) fn new_tokens(
    requested: Option<usize>,
    default: usize,
    limit: usize,
) -> Result<usize, String> {
    match requested {
        Some(0) => Err("must be at least 1".into()),
        Some(n) if n > limit => Err(format!(
            "is {n}; this server allows at most {limit} (--max-new-tokens)"
        )),
        Some(n) => Ok(n),
        None => Ok(default.min(limit)),
    }
}

/// `stop`: one string or several.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Sampling settings shared by the generation routes.
#[derive(Deserialize, Clone)]
pub struct Sampling {
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<Stop>,
    frequency_penalty: Option<f32>,
    n: Option<usize>,
    /// nlpd extension: the request's deadline (504 when it passes).
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// nlpd extension: `false` neither reads nor fills the result cache. Only deterministic
    /// requests (temperature 0, or a `seed`) that are not streamed are cached.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

impl Sampling {
    /// The settings [`generate_once`] reads, for a route that builds its [`GenerateOptions`]
    /// itself (the Hugging Face text-generation route): whether the client chose the seed, the
    /// deadline and the cache switch.
    pub(crate) fn chosen(
        seed: Option<u64>,
        timeout_ms: Option<crate::types::TimeoutMs>,
        cache: bool,
    ) -> Self {
        Sampling {
            max_tokens: None,
            max_completion_tokens: None,
            temperature: None,
            top_p: None,
            seed,
            stop: None,
            frequency_penalty: None,
            n: None,
            timeout_ms,
            cache,
        }
    }

    /// The options of these settings; `limit` is the server's `--max-new-tokens` (the default
    /// `default_max` is cut to it, a request asking for more is refused).
    fn options(
        &self,
        default_max: usize,
        default_temperature: f64,
        limit: usize,
    ) -> Result<GenerateOptions, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad("n", "only n = 1 is supported"));
        }
        let temperature = self.temperature.unwrap_or(default_temperature);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad(
                "temperature",
                "temperature must be between 0 and 2",
            ));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ApiError::bad("top_p", "top_p must be in (0, 1]"));
            }
        }
        let field = if self.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        let max_tokens = new_tokens(
            self.max_completion_tokens.or(self.max_tokens),
            default_max,
            limit,
        )
        .map_err(|m| ApiError::bad(field, format!("{field} {m}")))?;
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        Ok(GenerateOptions {
            max_tokens,
            temperature,
            top_p: self.top_p,
            seed: self.seed.unwrap_or(nlpd_engine::generate::DEFAULT_SEED),
            stop,
            // OpenAI's frequency_penalty (-2..2) maps onto a multiplicative repeat penalty.
            repeat_penalty: 1.0 + self.frequency_penalty.unwrap_or(0.0).max(0.0) / 2.0,
            constraint: None,
        })
    }
}

/// OpenAI `response_format`: `text` (free text), `json_object` (any JSON object) or
/// `json_schema` (a JSON value valid against `json_schema.schema`), enforced during decoding.
#[derive(Deserialize, Clone)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    kind: FormatKind,
    json_schema: Option<JsonSchemaFormat>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum FormatKind {
    Text,
    JsonObject,
    JsonSchema,
}

/// `response_format.json_schema`. `name`, `description` and `strict` are accepted as OpenAI
/// defines them; the schema is always enforced (as with `strict: true`).
#[derive(Deserialize, Clone)]
#[allow(dead_code)]
struct JsonSchemaFormat {
    name: Option<String>,
    description: Option<String>,
    schema: Option<Value>,
    strict: Option<bool>,
}

impl ResponseFormat {
    /// The compiled constraint (`None` for `text`); a bad schema is a 400 naming the field.
    fn constraint(&self) -> Result<Option<OutputConstraint>, ApiError> {
        const SCHEMA: &str = "response_format.json_schema.schema";
        match self.kind {
            FormatKind::Text => Ok(None),
            FormatKind::JsonObject => {
                OutputConstraint::json_object()
                    .map(Some)
                    .map_err(|e| ApiError::Internal {
                        message: format!("the json_object grammar: {e}"),
                    })
            }
            FormatKind::JsonSchema => {
                let Some(f) = &self.json_schema else {
                    return Err(ApiError::bad(
                        "response_format.json_schema",
                        "`response_format.json_schema` is required when `type` is `json_schema`",
                    ));
                };
                let Some(schema) = &f.schema else {
                    return Err(ApiError::bad(
                        SCHEMA,
                        "`response_format.json_schema.schema` is required",
                    ));
                };
                OutputConstraint::json_schema(schema)
                    .map(Some)
                    .map_err(|e| ApiError::bad(SCHEMA, format!("invalid `{SCHEMA}`: {e}")))
            }
        }
    }
}

/// The generation options of an OpenAI route, with `response_format` compiled into them.
fn with_format(
    mut opts: GenerateOptions,
    format: Option<&ResponseFormat>,
) -> Result<GenerateOptions, ApiError> {
    opts.constraint = match format {
        Some(f) => f.constraint()?,
        None => None,
    };
    Ok(opts)
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{:x}{:04x}",
        now_s(),
        N.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

/// Starts a generation on the named (or default) generative model.
pub(crate) async fn start(
    st: &AppState,
    model: Option<&str>,
    input: GenInput,
    opts: GenerateOptions,
    task: &'static str,
    timeout_ms: Option<crate::types::TimeoutMs>,
) -> Result<(UnboundedReceiver<GenEvent>, Served), ApiError> {
    // OpenAI clients name OpenAI models: a name this server does not have means the default.
    let model = model.filter(|m| st.registry.spec(m).is_some());
    let name = st.registry.resolve(model, "generate")?;
    let handle = st.registry.generator(&name).await?;
    let (dl, _) = deadline(st, timeout_ms);
    let mut rx = handle.generate(input, opts, task, dl)?;
    // The stream starts once the model took the request: its headers then carry the queue and
    // tokenize times (crate::timing), and a failure before that is an HTTP error, not an event.
    match rx.recv().await {
        Some(GenEvent::Started { .. }) => {}
        Some(GenEvent::Failed(e)) => return Err(e.into()),
        _ => {
            return Err(ApiError::Internal {
                message: "the generation worker stopped before the generation started".into(),
            })
        }
    }
    Ok((
        rx,
        Served {
            task,
            model: name,
            inputs: 1,
        },
    ))
}

/// Waits for the whole generation.
async fn collect(mut rx: UnboundedReceiver<GenEvent>) -> Result<Generation, ApiError> {
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Done(g) => return Ok(g),
            GenEvent::Failed(e) => return Err(e.into()),
            GenEvent::Started { .. } | GenEvent::Text(_) => {}
        }
    }
    Err(ApiError::Internal {
        message: "the generation worker stopped".into(),
    })
}

fn usage(g: &Generation) -> Value {
    usage_of(g.prompt_tokens, g.token_ids.len())
}

fn usage_of(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// A whole (not streamed) generation: from the result cache when the request is deterministic
/// (greedy, or a seed the client chose) and does not turn the cache off, else computed.
pub(crate) async fn generate_once(
    st: &AppState,
    model: Option<&str>,
    input: GenInput,
    opts: GenerateOptions,
    task: &'static str,
    sampling: &Sampling,
) -> Result<(GenResult, Served), ApiError> {
    let model = model.filter(|m| st.registry.spec(m).is_some());
    let name = st.registry.resolve(model, "generate")?;
    let handle = st.registry.generator(&name).await?;
    let served = Served {
        task,
        model: name.clone(),
        inputs: 1,
    };
    let run = || {
        let (input, opts, handle) = (input.clone(), opts.clone(), handle.clone());
        async move {
            let (dl, _) = deadline(st, sampling.timeout_ms);
            let g = collect(handle.generate(input, opts, task, dl)?).await?;
            if g.finish_reason == FinishReason::Cancelled {
                return Err(ApiError::Unavailable {
                    message: "the generation was cancelled".into(),
                });
            }
            Ok::<_, ApiError>(GenResult {
                completion_tokens: g.token_ids.len() as u32,
                prompt_tokens: g.prompt_tokens as u32,
                finish_reason: g.finish_reason,
                text: g.text,
            })
        }
    };
    let deterministic = generation_is_deterministic(&opts, sampling.seed.is_some());
    let cache = match &st.cache {
        Some(c) if sampling.cache && deterministic => c,
        Some(c) => {
            if !sampling.cache {
                c.bypassed(&name, 1);
            }
            return Ok((run().await?, served));
        }
        None => return Ok((run().await?, served)),
    };
    let prompt = match &input {
        GenInput::Chat(m) => GenPrompt::Chat(m),
        GenInput::Text(t) => GenPrompt::Text(t),
    };
    let key = generation_key(&name, &handle.revision, prompt, &opts);
    let values = cache
        .get_or_compute(&name, &[key], |_| async {
            Ok::<_, ApiError>(vec![CachedValue::Generation(run().await?)])
        })
        .await?;
    match values.first().map(|v| &**v) {
        Some(CachedValue::Generation(g)) => Ok((g.clone(), served)),
        _ => Err(ApiError::Internal {
            message: "the cache returned no generation for a generation key".into(),
        }),
    }
}

/// Builds the extra last chunk carrying usage (OpenAI `stream_options.include_usage`).
type UsageChunk = Box<dyn Fn(Value) -> Value + Send + Sync>;

/// Turns generation events into SSE events with `chunk` building each data object; after the
/// final chunk come the usage chunk (when asked for) and, on OpenAI routes, `[DONE]`.
pub(crate) fn sse_stream(
    rx: UnboundedReceiver<GenEvent>,
    chunk: impl Fn(Option<&str>, Option<&Generation>) -> Value + Send + 'static,
    done_marker: bool,
    usage_chunk: Option<UsageChunk>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = (rx, chunk, usage_chunk, VecDeque::<Event>::new(), false);
    stream::unfold(
        state,
        move |(mut rx, chunk, usage_chunk, mut pending, finished)| async move {
            if let Some(ev) = pending.pop_front() {
                return Some((Ok(ev), (rx, chunk, usage_chunk, pending, finished)));
            }
            if finished {
                return None;
            }
            loop {
                match rx.recv().await {
                    Some(GenEvent::Started { .. }) => continue,
                    Some(GenEvent::Text(t)) => {
                        let ev = Event::default().data(chunk(Some(&t), None).to_string());
                        return Some((Ok(ev), (rx, chunk, usage_chunk, pending, false)));
                    }
                    Some(GenEvent::Done(g)) => {
                        let ev = Event::default().data(chunk(None, Some(&g)).to_string());
                        if let Some(uc) = &usage_chunk {
                            pending.push_back(Event::default().data(uc(usage(&g)).to_string()));
                        }
                        if done_marker {
                            pending.push_back(Event::default().data("[DONE]"));
                        }
                        return Some((Ok(ev), (rx, chunk, usage_chunk, pending, true)));
                    }
                    Some(GenEvent::Failed(e)) => {
                        let body = ApiError::from(e).body().to_string();
                        if done_marker {
                            pending.push_back(Event::default().data("[DONE]"));
                        }
                        return Some((
                            Ok(Event::default().data(body)),
                            (rx, chunk, usage_chunk, pending, true),
                        ));
                    }
                    None => return None,
                }
            }
        },
    )
}

/// Records a stream's whole duration (request metrics and `/v1/stats`) when it ends or the
/// client leaves.
struct StreamTimer {
    stats: Arc<Stats>,
    served: Served,
    start: Instant,
}

impl Drop for StreamTimer {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        metrics::histogram!(m::REQUEST_DURATION, "route" => format!("stream:{}", self.served.task), "model" => self.served.model.clone())
            .record(took.as_secs_f64());
        self.stats.request(
            self.served.task,
            &self.served.model,
            self.served.inputs,
            true,
            took,
        );
    }
}

pub(crate) fn sse_response(
    st: &AppState,
    served: Served,
    s: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    let timer = StreamTimer {
        stats: st.stats().clone(),
        served: served.clone(),
        start: Instant::now(),
    };
    let s = futures_util::StreamExt::map(s, move |ev| {
        let _keep = &timer;
        ev
    });
    let mut r = Sse::new(s).keep_alive(KeepAlive::default()).into_response();
    r.extensions_mut().insert(served);
    r.extensions_mut().insert(Streamed);
    r
}

/// OpenAI `stream_options`: `include_usage` adds a last chunk with `choices: []` and the usage.
#[derive(Deserialize, Default, Clone, Copy)]
pub struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The fields every OpenAI response and chunk of one request share.
#[derive(Clone)]
struct Envelope {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
}

impl Envelope {
    fn new(prefix: &str, object: &'static str, model: &str) -> Self {
        Envelope {
            id: new_id(prefix),
            object,
            created: now_s(),
            model: model.to_string(),
        }
    }

    fn wrap(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object, "created": self.created, "model": self.model, "choices": choices})
    }

    /// `stream_options.include_usage`: the last chunk, with no choices and the usage.
    fn usage_chunk(&self, include: bool) -> Option<UsageChunk> {
        let env = self.clone();
        include.then(|| -> UsageChunk {
            Box::new(move |u| {
                let mut v = env.wrap(json!([]));
                v["usage"] = u;
                v
            })
        })
    }
}

#[derive(Deserialize)]
pub struct ChatRequest {
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: StreamOptions,
    response_format: Option<ResponseFormat>,
    #[serde(flatten)]
    sampling: Sampling,
}

pub async fn chat_completions(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::unprocessable(
            "messages",
            "`messages` must not be empty",
        ));
    }
    let opts = with_format(
        req.sampling.options(
            CHAT_MAX_TOKENS,
            OPENAI_TEMPERATURE,
            st.config.max_new_tokens,
        )?,
        req.response_format.as_ref(),
    )?;
    if !req.stream {
        let (g, served) = generate_once(
            &st,
            req.model.as_deref(),
            GenInput::Chat(req.messages),
            opts,
            "chat",
            &req.sampling,
        )
        .await?;
        let env = Envelope::new("chatcmpl", "chat.completion", &served.model);
        let mut body = env.wrap(json!([{"index": 0, "message": {"role": "assistant", "content": g.text}, "finish_reason": g.finish_reason.as_str()}]));
        body["usage"] = usage_of(g.prompt_tokens as usize, g.completion_tokens as usize);
        return Ok(respond(served, body));
    }
    let (rx, served) = start(
        &st,
        req.model.as_deref(),
        GenInput::Chat(req.messages),
        opts,
        "chat",
        req.sampling.timeout_ms,
    )
    .await?;
    let name = served.model.clone();
    {
        let env = Envelope::new("chatcmpl", "chat.completion.chunk", &name);
        let first = env.wrap(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]));
        let usage_chunk = env.usage_chunk(req.stream_options.include_usage);
        let body = sse_stream(
            rx,
            move |text, done| match (text, done) {
                (Some(t), _) => {
                    env.wrap(json!([{"index": 0, "delta": {"content": t}, "finish_reason": null}]))
                }
                (None, Some(g)) => env.wrap(
                    json!([{"index": 0, "delta": {}, "finish_reason": g.finish_reason.as_str()}]),
                ),
                _ => json!({}),
            },
            true,
            usage_chunk,
        );
        let head = stream::once(async move { Ok(Event::default().data(first.to_string())) });
        Ok(sse_response(
            &st,
            served,
            futures_util::StreamExt::chain(head, body),
        ))
    }
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    model: Option<String>,
    prompt: String,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: StreamOptions,
    response_format: Option<ResponseFormat>,
    #[serde(flatten)]
    sampling: Sampling,
}

pub async fn completions(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    if req.prompt.is_empty() {
        return Err(ApiError::unprocessable(
            "prompt",
            "`prompt` must not be empty",
        ));
    }
    let opts = with_format(
        req.sampling.options(
            COMPLETION_MAX_TOKENS,
            OPENAI_TEMPERATURE,
            st.config.max_new_tokens,
        )?,
        req.response_format.as_ref(),
    )?;
    if !req.stream {
        let (g, served) = generate_once(
            &st,
            req.model.as_deref(),
            GenInput::Text(req.prompt),
            opts,
            "completion",
            &req.sampling,
        )
        .await?;
        let env = Envelope::new("cmpl", "text_completion", &served.model);
        let mut body = env
            .wrap(json!([{"index": 0, "text": g.text, "finish_reason": g.finish_reason.as_str()}]));
        body["usage"] = usage_of(g.prompt_tokens as usize, g.completion_tokens as usize);
        return Ok(respond(served, body));
    }
    let (rx, served) = start(
        &st,
        req.model.as_deref(),
        GenInput::Text(req.prompt),
        opts,
        "completion",
        req.sampling.timeout_ms,
    )
    .await?;
    let name = served.model.clone();
    let env = Envelope::new("cmpl", "text_completion", &name);
    {
        let usage_chunk = env.usage_chunk(req.stream_options.include_usage);
        let body = sse_stream(
            rx,
            move |text, done| {
                let (t, finish) = match (text, done) {
                    (Some(t), _) => (t.to_string(), Value::Null),
                    (None, Some(g)) => (String::new(), json!(g.finish_reason.as_str())),
                    _ => (String::new(), Value::Null),
                };
                env.wrap(json!([{"index": 0, "text": t, "finish_reason": finish}]))
            },
            true,
            usage_chunk,
        );
        Ok(sse_response(&st, served, body))
    }
}

#[derive(Deserialize)]
pub struct ExplainRequest {
    model: Option<String>,
    code: String,
    language: Option<String>,
    /// `brief` (default) or `detailed`.
    #[serde(default)]
    detail: Detail,
    #[serde(default)]
    stream: bool,
    /// Refused unless `text`: an explanation is prose (structured output is on the OpenAI routes).
    response_format: Option<Value>,
    #[serde(flatten)]
    sampling: Sampling,
}

pub async fn explain(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ExplainRequest>,
) -> Result<Response, ApiError> {
    if req.code.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "code",
            "`code` must be a non-empty string",
        ));
    }
    if req
        .response_format
        .as_ref()
        .is_some_and(|f| f["type"] != "text")
    {
        return Err(ApiError::bad(
            "response_format",
            "`response_format` is not supported by /v1/explain (its answer is prose); use /v1/chat/completions for structured output",
        ));
    }
    let mut sampling = req.sampling.clone();
    // Small models loop without a little repetition penalty.
    if sampling.frequency_penalty.is_none() {
        sampling.frequency_penalty = Some(0.2);
    }
    let opts = sampling.options(
        req.detail.default_max_tokens(),
        EXPLAIN_TEMPERATURE,
        st.config.max_new_tokens,
    )?;
    let messages = explain_messages(&req.code, req.language.as_deref(), req.detail);
    if !req.stream {
        let (g, served) = generate_once(
            &st,
            req.model.as_deref(),
            GenInput::Chat(messages),
            opts,
            "explain",
            &sampling,
        )
        .await?;
        let name = served.model.clone();
        return Ok(respond(
            served,
            json!({
                "explanation": g.text.trim(), "model": name, "finish_reason": g.finish_reason.as_str(),
                "usage": usage_of(g.prompt_tokens as usize, g.completion_tokens as usize),
            }),
        ));
    }
    let (rx, served) = start(
        &st,
        req.model.as_deref(),
        GenInput::Chat(messages),
        opts,
        "explain",
        req.sampling.timeout_ms,
    )
    .await?;
    let name = served.model.clone();
    {
        let name2 = name.clone();
        let body = sse_stream(
            rx,
            move |text, done| match (text, done) {
                (Some(t), _) => json!({"text": t}),
                (None, Some(g)) => {
                    json!({"done": true, "model": name2, "finish_reason": g.finish_reason.as_str(), "usage": usage(g)})
                }
                _ => json!({}),
            },
            false,
            None,
        );
        Ok(sse_response(&st, served, body))
    }
}
