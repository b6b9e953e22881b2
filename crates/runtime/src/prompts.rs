//! Prompts nlpd builds for generative tasks.

use nlpd_engine::generate::ChatMessage;

/// The chat for explaining a piece of code.
pub fn explain_messages(code: &str, language: Option<&str>) -> Vec<ChatMessage> {
    let lang = language.map(str::trim).filter(|l| !l.is_empty());
    let fence = lang.unwrap_or("");
    let what = lang
        .map(|l| format!("{l} code"))
        .unwrap_or_else(|| "code".to_string());
    vec![ChatMessage::new(
        "user",
        &format!(
            "Explain what this {what} does, briefly and clearly:\n```{fence}\n{}\n```",
            code.trim_end()
        ),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_prompt_names_the_language() {
        let m = explain_messages("def f(): pass\n", Some("python"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].role, "user");
        assert!(m[0].content.contains("this python code does"));
        assert!(m[0].content.contains("```python\ndef f(): pass\n```"));
        let m = explain_messages("x", None);
        assert!(m[0].content.contains("this code does"));
    }
}
