//! What an embedding request does to its texts before the pipeline: the prompt (put before each
//! text, as sentence-transformers does) and truncation from the start (keeping a long text's end).
//!
//! Both rewrite the texts themselves, so the result cache keys, the prediction log and the token
//! counts see exactly what the model embeds. A prompt's tokens count toward the model's limit
//! and are pooled with the text's (sentence-transformers' default `include_prompt`).

use crate::error::ApiError;
use crate::state::AppState;

/// Which end of an over-long input is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Keep the start (cut the end): the default everywhere.
    End,
    /// Keep the end (cut the start): Cohere `truncate: START`, `truncation_direction: left`.
    Start,
}

/// The prompt text for a request to model `name`: the literal `prompt`, else the model's prompt
/// `prompt_name`, else the model's default prompt (its config's `default_prompt_name` or
/// `--default-prompt`). `None` means no prompt.
pub fn prompt_for(
    st: &AppState,
    name: &str,
    prompt_name: Option<&str>,
    prompt: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(spec) = st.registry.spec(name) else {
        return Ok(prompt.filter(|p| !p.is_empty()).map(str::to_string));
    };
    spec.prompts
        .choose(prompt_name, prompt)
        .map_err(|e| match e {
            nlpd_engine::prompts::PromptError::Both => ApiError::bad("prompt", e.to_string()),
            nlpd_engine::prompts::PromptError::Unknown { .. } => {
                ApiError::unprocessable("prompt_name", e.to_string())
            }
        })
}

/// The texts as the model gets them: each checked non-empty (422 naming `field[i]`), the prompt
/// put before it and, for [`Side::Start`], cut at the start so that prompt and text fit the
/// model's limit (the cut falls on a word start). Texts that fit are untouched.
pub async fn prepare(
    st: &AppState,
    name: &str,
    texts: Vec<String>,
    prompt: Option<&str>,
    side: Side,
    field: &str,
) -> Result<Vec<String>, ApiError> {
    for (i, t) in texts.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(ApiError::unprocessable(
                &format!("{field}[{i}]"),
                format!("empty input: {field}[{i}] must be a non-empty string"),
            ));
        }
    }
    let prompt = prompt.unwrap_or("").to_string();
    if side == Side::End {
        if prompt.is_empty() {
            return Ok(texts);
        }
        return Ok(texts.into_iter().map(|t| format!("{prompt}{t}")).collect());
    }
    let handle = st.registry.encoder(name).await?;
    tokio::task::spawn_blocking(move || {
        let tokenizer = &handle.info.tokenizer;
        texts
            .into_iter()
            .map(|t| {
                let cut = tokenizer.keep_end(&prompt, &t)?;
                Ok(format!("{prompt}{}", &t[cut..]))
            })
            .collect::<Result<Vec<_>, nlpd_engine::EngineError>>()
    })
    .await
    .map_err(|e| ApiError::Internal {
        message: format!("tokenizer task failed: {e}"),
    })?
    .map_err(ApiError::from)
}

/// Errors of the pipeline name the native `inputs[i]`; routes whose field is called otherwise
/// (`texts`, `input`) rename it.
pub fn rename_inputs(e: ApiError, field: &str) -> ApiError {
    let rename = |p: Option<String>| {
        p.map(|p| match p.strip_prefix("inputs") {
            Some(rest) if rest.is_empty() || rest.starts_with('[') => format!("{field}{rest}"),
            _ => p,
        })
    };
    match e {
        ApiError::Unprocessable { message, param } => ApiError::Unprocessable {
            message: message.replace("inputs[", &format!("{field}[")),
            param: rename(param),
        },
        ApiError::TooLarge { message, param } => ApiError::TooLarge {
            message,
            param: rename(param),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_the_inputs_field() {
        let e = ApiError::unprocessable("inputs[3]", "input inputs[3] has 600 tokens");
        assert_eq!(
            rename_inputs(e, "texts"),
            ApiError::unprocessable("texts[3]", "input texts[3] has 600 tokens")
        );
        let e = ApiError::unprocessable("model", "x");
        assert_eq!(rename_inputs(e.clone(), "texts"), e);
    }
}
