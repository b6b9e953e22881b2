//! A small JSON-schema validator for the structured-output tests, independent of llguidance: the
//! keywords the tests' schemas use (type, enum, const, properties, required,
//! additionalProperties, items, min/maxItems, min/maxLength, minimum/maximum, anyOf, local $ref,
//! and the annotation-only title/description). A keyword it does not know fails loudly, so a
//! schema can never be checked less than it claims.
#![allow(dead_code)]

use serde_json::Value;

/// `Ok(())` when `value` is valid against `schema` (whose `$defs` `$ref`s resolve against `root`).
pub fn validate(root: &Value, schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{path}: schema `false` or not an object")),
        };
    };
    let err = |m: String| Err(format!("{path}: {m} (value {value})"));
    for (k, v) in s {
        match k.as_str() {
            "$ref" => {
                let pointer = v.as_str().and_then(|r| r.strip_prefix('#')).unwrap_or("");
                let target = root
                    .pointer(pointer)
                    .ok_or_else(|| format!("{path}: unresolved $ref {v}"))?;
                validate(root, target, value, path)?;
            }
            "type" => {
                let types: Vec<&str> = match v {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => return err(format!("bad type {v}")),
                };
                if !types.iter().any(|t| has_type(value, t)) {
                    return err(format!("not of type {v}"));
                }
            }
            "enum" => {
                if !v.as_array().is_some_and(|a| a.contains(value)) {
                    return err(format!("not one of {v}"));
                }
            }
            "const" => {
                if v != value {
                    return err(format!("not {v}"));
                }
            }
            "properties" => {
                if let (Some(props), Some(obj)) = (v.as_object(), value.as_object()) {
                    for (name, sub) in props {
                        if let Some(x) = obj.get(name) {
                            validate(root, sub, x, &format!("{path}.{name}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Some(obj) = value.as_object() {
                    for name in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !obj.contains_key(name) {
                            return err(format!("missing required `{name}`"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(obj) = value.as_object() {
                    let known = s.get("properties").and_then(Value::as_object);
                    for (name, x) in obj {
                        if known.is_some_and(|p| p.contains_key(name)) {
                            continue;
                        }
                        validate(root, v, x, &format!("{path}.{name}"))
                            .map_err(|e| format!("additional property `{name}`: {e}"))?;
                    }
                }
            }
            "items" => {
                for (i, x) in value.as_array().into_iter().flatten().enumerate() {
                    validate(root, v, x, &format!("{path}[{i}]"))?;
                }
            }
            "minItems" | "maxItems" => {
                if let (Some(a), Some(n)) = (value.as_array(), v.as_u64()) {
                    let ok = if k == "minItems" {
                        a.len() as u64 >= n
                    } else {
                        a.len() as u64 <= n
                    };
                    if !ok {
                        return err(format!("{k} {n}"));
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let (Some(t), Some(n)) = (value.as_str(), v.as_u64()) {
                    let len = t.chars().count() as u64;
                    let ok = if k == "minLength" { len >= n } else { len <= n };
                    if !ok {
                        return err(format!("{k} {n}"));
                    }
                }
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                if let (Some(x), Some(n)) = (value.as_f64(), v.as_f64()) {
                    let ok = match k.as_str() {
                        "minimum" => x >= n,
                        "maximum" => x <= n,
                        "exclusiveMinimum" => x > n,
                        _ => x < n,
                    };
                    if !ok {
                        return err(format!("{k} {n}"));
                    }
                }
            }
            "anyOf" => {
                let arms = v.as_array().cloned().unwrap_or_default();
                if !arms.iter().any(|a| validate(root, a, value, path).is_ok()) {
                    return err("matches no anyOf arm".into());
                }
            }
            "$defs" | "title" | "description" => {}
            other => panic!("the test validator does not know the keyword `{other}`"),
        }
    }
    Ok(())
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    }
}

/// Parses `text` as JSON and validates it against `schema`, with a message naming the text.
pub fn check(schema: &Value, text: &str) -> Value {
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    if let Err(e) = validate(schema, schema, &v, "$") {
        panic!("invalid against the schema: {e}\ntext: {text}");
    }
    v
}

/// The schemas of the tests: nested objects, enums, arrays, a `$ref`, bounded strings (a small
/// model then cannot run a string past `max_tokens`).
pub fn person_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
            "role": {"type": "string", "enum": ["admin", "editor", "viewer"]},
            "skills": {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 1, "maxItems": 3},
            "address": {"$ref": "#/$defs/address"}
        },
        "required": ["name", "age", "role", "skills", "address"],
        "additionalProperties": false,
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 30},
                    "country": {"type": "string", "enum": ["FR", "DE", "GB", "US"]}
                },
                "required": ["city", "country"],
                "additionalProperties": false
            }
        }
    })
}

/// A list of items with a nested enum and a boolean.
pub fn inventory_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 4,
                "items": {
                    "type": "object",
                    "properties": {
                        "fruit": {"type": "string", "enum": ["apple", "banana", "cherry"]},
                        "count": {"type": "integer", "minimum": 1, "maximum": 99},
                        "ripe": {"type": "boolean"}
                    },
                    "required": ["fruit", "count", "ripe"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["items"],
        "additionalProperties": false
    })
}
