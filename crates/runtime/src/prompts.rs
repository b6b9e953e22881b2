//! Prompts nlpd builds for generative tasks.

use nlpd_engine::generate::ChatMessage;

/// How much an explanation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// What the code does, in a few sentences.
    #[default]
    Brief,
    /// Purpose, inputs and outputs, the steps, and edge cases or problems.
    Detailed,
}

impl Detail {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "brief" => Some(Detail::Brief),
            "detailed" => Some(Detail::Detailed),
            _ => None,
        }
    }

    /// Tokens to generate when the request does not say.
    pub fn default_max_tokens(self) -> usize {
        match self {
            Detail::Brief => 256,
            Detail::Detailed => 512,
        }
    }
}

/// The chat for explaining a piece of code.
pub fn explain_messages(code: &str, language: Option<&str>, detail: Detail) -> Vec<ChatMessage> {
    let lang = language.map(str::trim).filter(|l| !l.is_empty());
    let fence = lang.unwrap_or("");
    let what = lang
        .map(|l| format!("{l} code"))
        .unwrap_or_else(|| "code".to_string());
    let ask = match detail {
        Detail::Brief => format!("Explain what this {what} does, briefly and clearly:"),
        Detail::Detailed => format!(
            "Explain this {what} in detail: its purpose, its inputs and outputs, how it works \
             step by step, and any edge cases or problems:"
        ),
    };
    vec![ChatMessage::new(
        "user",
        &format!("{ask}\n```{fence}\n{}\n```", code.trim_end()),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_prompt_names_the_language() {
        let m = explain_messages("def f(): pass\n", Some("python"), Detail::Brief);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].role, "user");
        assert!(m[0].content.contains("this python code does"));
        assert!(m[0].content.contains("```python\ndef f(): pass\n```"));
        let m = explain_messages("x", None, Detail::Brief);
        assert!(m[0].content.contains("this code does"));
        let m = explain_messages("x", Some("rust"), Detail::Detailed);
        assert!(m[0].content.contains("Explain this rust code in detail"));
        assert!(m[0].content.contains("edge cases"));
        assert!(m[0].content.ends_with("```rust\nx\n```"));
        assert_eq!(Detail::parse("detailed"), Some(Detail::Detailed));
        assert_eq!(Detail::parse("long"), None);
        assert!(Detail::Detailed.default_max_tokens() > Detail::Brief.default_max_tokens());
    }
}
