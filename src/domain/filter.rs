//! Payload filters in the style of Outpost's: an endpoint receives an event
//! only when its filter matches the event's payload.
//!
//! ```json
//! {"customer.tier": "gold", "amount": {"$gte": 100},
//!  "$or": [{"country": {"$in": ["DE", "FR"]}}, {"vip": true}]}
//! ```
//! Keys are field paths (dots separate object keys and array indexes);
//! a plain value means `$eq`; an object of operators applies each of them;
//! an object without operators is a filter on that sub-object. Operators:
//! `$eq $neq $gt $gte $lt $lte $in $nin $exists $startsWith`, combined with
//! `$and $or $not`. Comparisons need both sides to be numbers or both
//! strings; anything else does not match.
//!
//! This module only checks a filter (when an endpoint is saved, so that a
//! mistake is a 400 naming its path). Filters are evaluated where the
//! endpoints live, inside the Redis scripts that match and expand events
//! (`store/lua/filter.lua`), one implementation for both.

use serde_json::{Map, Value};

/// A checked filter; serialises as the JSON it was given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct PayloadFilter(Map<String, Value>);

/// What is wrong with a filter, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter: {why} at {path}")]
pub struct FilterError {
    /// Where, as a path into the filter (`customer.tier.$gtx`).
    pub path: String,
    /// What.
    pub why: String,
}

/// Nesting deeper than this is refused (the evaluator recurses).
const MAX_DEPTH: usize = 16;

impl PayloadFilter {
    /// Checks a filter.
    pub fn parse(raw: Value) -> Result<Self, FilterError> {
        match raw {
            Value::Object(map) => {
                node(&map, "", 0)?;
                Ok(Self(map))
            }
            _ => Err(FilterError { path: "$".to_owned(), why: "must be a JSON object".to_owned() }),
        }
    }

    /// The filter as JSON.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl TryFrom<Value> for PayloadFilter {
    type Error = FilterError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        Self::parse(v)
    }
}

impl From<PayloadFilter> for Value {
    fn from(f: PayloadFilter) -> Self {
        Value::Object(f.0)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn err(path: String, why: impl Into<String>) -> FilterError {
    FilterError { path, why: why.into() }
}

/// A filter object: paths and combinators.
fn node(map: &Map<String, Value>, path: &str, depth: usize) -> Result<(), FilterError> {
    if depth > MAX_DEPTH {
        return Err(err(path.to_owned(), format!("nested deeper than {MAX_DEPTH}")));
    }
    for (key, value) in map {
        let here = join(path, key);
        match key.as_str() {
            "$and" | "$or" => match value {
                Value::Array(items) if !items.is_empty() => {
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{here}.{i}");
                        match item {
                            Value::Object(m) => node(m, &at, depth + 1)?,
                            _ => return Err(err(at, "must be a filter object")),
                        }
                    }
                }
                _ => return Err(err(here, "must be a non-empty array of filter objects")),
            },
            "$not" => match value {
                Value::Object(m) => node(m, &here, depth + 1)?,
                _ => return Err(err(here, "must be a filter object")),
            },
            k if k.starts_with('$') => {
                return Err(err(here, format!("unknown combinator {k} (a field's operators go under the field)")))
            }
            _ => condition(value, &here, depth + 1)?,
        }
    }
    Ok(())
}

/// What a field must satisfy: a plain value, an operator object, or a
/// nested filter.
fn condition(value: &Value, path: &str, depth: usize) -> Result<(), FilterError> {
    let Value::Object(map) = value else {
        return Ok(()); // a plain value: $eq
    };
    let ops = map.keys().filter(|k| k.starts_with('$')).count();
    if ops == 0 {
        return node(map, path, depth);
    }
    if ops != map.len() {
        return Err(err(path.to_owned(), "mixes operators and field names"));
    }
    for (op, operand) in map {
        let here = join(path, op);
        let ok = match op.as_str() {
            "$eq" | "$neq" => true,
            "$gt" | "$gte" | "$lt" | "$lte" => operand.is_number() || operand.is_string(),
            "$in" | "$nin" => operand.is_array(),
            "$exists" => operand.is_boolean(),
            "$startsWith" => operand.is_string(),
            "$not" => {
                condition(operand, path, depth + 1)?;
                operand.is_object()
            }
            other => return Err(err(here, format!("unknown operator {other}"))),
        };
        if !ok {
            let wants = match op.as_str() {
                "$in" | "$nin" => "an array",
                "$exists" => "true or false",
                "$startsWith" => "a string",
                "$not" => "an operator object",
                _ => "a number or a string",
            };
            return Err(err(here, format!("{op} takes {wants}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        for f in [
            json!({"customer.tier": "gold"}),
            json!({"amount": {"$gte": 100, "$lt": 500}}),
            json!({"$or": [{"country": {"$in": ["DE", "FR"]}}, {"vip": true}]}),
            json!({"$not": {"status": "test"}}),
            json!({"customer": {"tier": {"$neq": "free"}}}),
            json!({"email": {"$exists": true, "$startsWith": "a"}}),
            json!({"items.0.sku": {"$nin": [1, 2]}}),
        ] {
            PayloadFilter::parse(f.clone()).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn names_the_path_of_the_bad_operator() {
        let e = PayloadFilter::parse(json!({"customer": {"tier": {"$gtx": 1}}})).unwrap_err();
        assert_eq!(e.path, "customer.tier.$gtx");
        let e = PayloadFilter::parse(json!({"$or": [{"a": 1}, {"b": {"$in": 3}}]})).unwrap_err();
        assert_eq!(e.path, "$or.1.b.$in");
        let e = PayloadFilter::parse(json!({"$xor": []})).unwrap_err();
        assert_eq!(e.path, "$xor");
        assert!(PayloadFilter::parse(json!({"a": {"$eq": 1, "b": 2}})).is_err());
        assert!(PayloadFilter::parse(json!([1])).is_err());
    }
}
