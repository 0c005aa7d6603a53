//! Keeping a request within what its service accepts: text cut to a limit counted the way the
//! service counts it (characters, or bytes of the encoded request), always ending in a marker
//! that says text was cut, so an oversized alert is shortened instead of refused.
//!
//! A request's body is fitted as a whole ([`fit_json`]): the strings that may be cut are capped
//! at one common length, the highest at which the body fits, so one huge annotation is cut
//! before any short field loses a character.

use serde_json::Value;

use super::EncodeError;

/// Ends every text that was cut.
pub const MARKER: char = '…';

/// `text` cut to at most `max` characters (Unicode scalar values), the last one the marker.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push(MARKER);
    cut
}

/// The highest cap at which strings of these `lengths`, each cut to at most the cap, take at
/// most `budget` in all (`usize::MAX` when they fit uncut).
pub fn water_level(lengths: &[usize], budget: usize) -> usize {
    let mut sorted = lengths.to_vec();
    sorted.sort_unstable();
    let mut remaining = budget;
    for (i, &length) in sorted.iter().enumerate() {
        let left = sorted.len() - i;
        if length.saturating_mul(left) > remaining {
            return remaining / left;
        }
        remaining -= length;
    }
    usize::MAX
}

/// The bytes `c` takes inside a JSON string as serde_json writes it.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The bytes `text` takes inside a JSON string, without its quotes.
pub fn json_bytes(text: &str) -> usize {
    text.chars().map(json_len).sum()
}

/// `text` cut so that it takes at most `max` bytes inside a JSON string, marker included.
pub fn truncate_json_bytes(text: &str, max: usize) -> String {
    if json_bytes(text) <= max {
        return text.to_string();
    }
    let budget = max.saturating_sub(MARKER.len_utf8());
    let mut used = 0;
    let mut cut = String::new();
    for c in text.chars() {
        used += json_len(c);
        if used > budget {
            break;
        }
        cut.push(c);
    }
    if max >= MARKER.len_utf8() {
        cut.push(MARKER);
    }
    cut
}

/// The size of `body` as sent.
pub fn encoded_len(body: &Value) -> usize {
    serde_json::to_vec(body).map_or(usize::MAX, |bytes| bytes.len())
}

/// Every string in `value`, depth first.
fn strings_mut<'a>(value: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter_mut().for_each(|v| strings_mut(v, out)),
        Value::Object(map) => map.values_mut().for_each(|v| strings_mut(v, out)),
        _ => {}
    }
}

/// The JSON length of the longest string in `value`.
fn longest_string(value: &Value) -> usize {
    match value {
        Value::String(s) => json_bytes(s),
        Value::Array(items) => items.iter().map(longest_string).max().unwrap_or(0),
        Value::Object(map) => map.values().map(longest_string).max().unwrap_or(0),
        _ => 0,
    }
}

/// `body` with every string under the `cuttable` JSON pointers capped at `level` bytes.
fn capped(body: &Value, cuttable: &[&str], level: usize) -> Value {
    let mut out = body.clone();
    for pointer in cuttable {
        if let Some(subtree) = out.pointer_mut(pointer) {
            let mut strings = Vec::new();
            strings_mut(subtree, &mut strings);
            for s in strings {
                if json_bytes(s) > level {
                    *s = truncate_json_bytes(s, level);
                }
            }
        }
    }
    out
}

/// Fits `body` into `limit` bytes by cutting only strings under the `cuttable` JSON pointers (a
/// pointer to an object or array takes every string in it), all capped at the highest common
/// length that fits. An error when even cutting them to nothing is not enough: the rest of the
/// body alone is too large, which the encoders rule out by bounding it.
pub fn fit_json(body: &mut Value, limit: usize, cuttable: &[&str]) -> Result<(), EncodeError> {
    if encoded_len(body) <= limit {
        return Ok(());
    }
    let longest = cuttable
        .iter()
        .filter_map(|pointer| body.pointer(pointer))
        .map(longest_string)
        .max()
        .unwrap_or(0);
    if encoded_len(&capped(body, cuttable, 0)) > limit {
        return Err(EncodeError(format!(
            "the request cannot be made smaller than its limit of {limit} bytes"
        )));
    }
    // The highest level that fits: fits(0) holds, fits(longest) does not.
    let (mut fits, mut too_big) = (0, longest);
    while too_big - fits > 1 {
        let level = fits + (too_big - fits) / 2;
        if encoded_len(&capped(body, cuttable, level)) <= limit {
            fits = level;
        } else {
            too_big = level;
        }
    }
    *body = capped(body, cuttable, fits);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cuts_count_what_the_service_counts_and_say_so() {
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(truncate("ééééé€", 4), "ééé…");
        assert_eq!(truncate_json_bytes("abc", 3), "abc");
        // "é" is two bytes, a quote two once escaped, a control character six.
        assert_eq!(truncate_json_bytes("éé\"\u{1}xyz", 9), "éé\"…");
        assert_eq!(truncate_json_bytes("éé\"\u{1}xyz", 8), "éé…");
        assert_eq!(json_bytes(&truncate_json_bytes("\"\"\"\"\"\"", 7)), 7);
        assert!(truncate_json_bytes("€€€€", 5).ends_with(MARKER));
    }

    #[test]
    fn the_water_level_cuts_only_the_long_ones() {
        assert_eq!(water_level(&[3, 4], 10), usize::MAX);
        assert_eq!(water_level(&[2, 100, 100], 52), 25);
        assert_eq!(water_level(&[50, 50], 10), 5);
        assert_eq!(water_level(&[], 0), usize::MAX);
    }

    #[test]
    fn the_longest_text_is_cut_first_and_the_body_fits_exactly() {
        let mut body = json!({
            "key": "never cut",
            "text": {"title": "short title", "body": "x".repeat(10_000)},
        });
        fit_json(&mut body, 2_000, &["/text"]).expect("fits");
        assert!(encoded_len(&body) <= 2_000, "{}", encoded_len(&body));
        assert!(encoded_len(&body) > 1_990, "no more is cut than needed");
        assert_eq!(body["text"]["title"], "short title");
        assert_eq!(body["key"], "never cut");
        assert!(
            body["text"]["body"]
                .as_str()
                .is_some_and(|s| s.ends_with(MARKER))
        );
    }

    #[test]
    fn hostile_text_of_any_size_fits_every_limit() {
        let mut rng = fastrand::Rng::with_seed(14);
        let pieces = [
            "a", "é", "€", "𝄞", "\"", "\\", "\n", "\u{1}", "\u{2028}", "<@U1>",
        ];
        for _ in 0..200 {
            let mut text = || -> String {
                (0..rng.usize(0..3_000))
                    .map(|_| pieces[rng.usize(..pieces.len())])
                    .collect()
            };
            let mut body = json!({"a": text(), "list": [text(), text()], "fixed": "k"});
            let limit = rng.usize(200..20_000);
            fit_json(&mut body, limit, &["/a", "/list"]).expect("fits");
            assert!(encoded_len(&body) <= limit);
            assert_eq!(body["fixed"], "k");
        }
    }

    #[test]
    fn a_body_too_large_without_its_cuttable_text_is_an_error() {
        let mut body = json!({"fixed": "y".repeat(500), "text": "x".repeat(500)});
        assert!(fit_json(&mut body, 100, &["/text"]).is_err());
    }
}
