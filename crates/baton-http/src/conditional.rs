//! Conditional requests (RFC 9110 §13) on records: parsing `If-Match` and
//! `If-None-Match`, and turning them into the core's [`Precondition`] for
//! writes or into 304/412 for reads.
//!
//! A record's entity tag is its version, quoted and strong: `"3"`.
//! `If-Match` compares strongly, so a weak tag (`W/"3"`) in it can never
//! match and is answered 400 rather than silently failing;
//! `If-None-Match` compares weakly (`W/"3"` matches version 3). A header
//! may carry a list of tags (`"3", "4"`, in one line or several) or `*`.
//! Tags that are not quoted version numbers are 400: they cannot have
//! come from Baton.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use baton::{Precondition, Version, record_limits};

use crate::error::ApiError;

/// A parsed `If-Match` / `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tags {
    /// `*`.
    Any,
    /// A list of versions, each with whether its tag was weak.
    List(Vec<(Version, bool)>),
}

impl Tags {
    /// Whether the version matches by weak comparison (`If-None-Match`).
    pub(crate) fn matches_weakly(&self, v: Version) -> bool {
        match self {
            Tags::Any => true,
            Tags::List(tags) => tags.iter().any(|(t, _)| *t == v),
        }
    }
}

fn malformed(name: &HeaderName, why: &str) -> ApiError {
    ApiError::malformed(format!(
        "{name}: {why}; Baton's entity tags are quoted record versions such as \"3\" (from the \
         ETag of your last read), a list of them, or *"
    ))
    .with_field(name.as_str())
}

/// Parses every line of header `name`: `None` when absent.
pub(crate) fn parse(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Tags>, ApiError> {
    let mut lines = headers.get_all(name).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let mut text = String::new();
    for line in lines {
        let line = line
            .to_str()
            .map_err(|_| malformed(name, "not printable text"))?;
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(line);
    }
    if text.trim() == "*" {
        return Ok(Some(Tags::Any));
    }
    let mut tags = Vec::new();
    let mut rest = text.as_str();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('*') {
            return Err(malformed(name, "* must stand alone"));
        }
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let Some(body) = quoted.strip_prefix('"') else {
            return Err(malformed(name, "an entity tag must be in double quotes"));
        };
        let Some(end) = body.find('"') else {
            return Err(malformed(
                name,
                "an entity tag is missing its closing quote",
            ));
        };
        let version = body[..end]
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 1 && body[..end].bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| malformed(name, &format!("\"{}\" is not a version", &body[..end])))?;
        tags.push((Version(version), weak));
        rest = &body[end + 1..];
        if !(rest.is_empty() || rest.starts_with([' ', '\t', ','])) {
            return Err(malformed(name, "entity tags must be separated by commas"));
        }
    }
    if tags.is_empty() {
        return Err(malformed(name, "no entity tag"));
    }
    if tags.len() > record_limits::MAX_TAGS {
        return Err(malformed(
            name,
            &format!("at most {} entity tags", record_limits::MAX_TAGS),
        ));
    }
    Ok(Some(Tags::List(tags)))
}

/// `If-Match` for strong comparison: a weak tag is refused with 400.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<Tags>, ApiError> {
    let tags = parse(headers, &header::IF_MATCH)?;
    if let Some(Tags::List(list)) = &tags
        && let Some((v, _)) = list.iter().find(|(_, weak)| *weak)
    {
        return Err(ApiError::malformed(format!(
            "If-Match compares entity tags strongly (RFC 9110 §13.1.1), so the weak tag W/\"{v}\" \
             can never match; send the strong tag \"{v}\" from the ETag of your last read"
        ))
        .with_field("If-Match"));
    }
    Ok(tags)
}

/// What a write asserts, from its `If-Match` / `If-None-Match`.
pub(crate) fn write_precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let if_match = if_match(headers)?;
    let if_none_match = parse(headers, &header::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(ApiError::malformed(
            "send If-Match (to change the version you read) or If-None-Match: * (to create), \
             not both",
        )
        .with_field("If-None-Match")),
        (Some(Tags::Any), None) => Ok(Precondition::Exists),
        (Some(Tags::List(tags)), None) => Ok(Precondition::Matches(
            tags.into_iter().map(|(v, _)| v).collect(),
        )),
        (None, Some(Tags::Any)) => Ok(Precondition::Absent),
        (None, Some(Tags::List(_))) => Err(ApiError::malformed(
            "on a write, If-None-Match supports only * (create if absent); to write only if the \
             record is at a version, send If-Match with that version",
        )
        .with_field("If-None-Match")),
        (None, None) => Ok(Precondition::None),
    }
}

/// The `ETag` header value of a version.
pub(crate) fn etag_value(version: Version) -> Result<HeaderValue, ApiError> {
    HeaderValue::try_from(crate::error::etag(version)).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn tags(value: &str) -> Result<Option<Tags>, ApiError> {
        parse(
            &headers(&[(&header::IF_NONE_MATCH, value)]),
            &header::IF_NONE_MATCH,
        )
    }

    #[test]
    fn lists_stars_and_weak_tags() {
        assert_eq!(tags("*").unwrap(), Some(Tags::Any));
        assert_eq!(
            tags("\"3\"").unwrap(),
            Some(Tags::List(vec![(Version(3), false)]))
        );
        assert_eq!(
            tags(" W/\"3\" ,\"4\",, \"12\"").unwrap(),
            Some(Tags::List(vec![
                (Version(3), true),
                (Version(4), false),
                (Version(12), false)
            ]))
        );
        let two_lines = headers(&[(&header::IF_MATCH, "\"1\""), (&header::IF_MATCH, "\"2\"")]);
        assert_eq!(
            parse(&two_lines, &header::IF_MATCH).unwrap(),
            Some(Tags::List(vec![(Version(1), false), (Version(2), false)]))
        );
        assert_eq!(parse(&HeaderMap::new(), &header::IF_MATCH).unwrap(), None);
    }

    #[test]
    fn malformed_tags_are_400() {
        for bad in [
            "3",
            "\"3",
            "\"abc\"",
            "\"0\"",
            "\"-1\"",
            "\"+1\"",
            "*, \"1\"",
            "\"1\"\"2\"",
            "",
            "w/\"1\"",
        ] {
            let e = tags(bad).unwrap_err();
            assert_eq!(e.problem().status, 400, "{bad:?}");
        }
        let many = vec!["\"1\""; record_limits::MAX_TAGS + 1].join(",");
        assert!(tags(&many).is_err());
    }

    #[test]
    fn if_match_refuses_weak_tags() {
        let e = if_match(&headers(&[(&header::IF_MATCH, "W/\"3\"")])).unwrap_err();
        assert_eq!(e.problem().status, 400);
        assert!(
            e.problem().detail.contains("strong"),
            "{}",
            e.problem().detail
        );
    }

    #[test]
    fn write_preconditions() {
        let pre = |pairs: &[(&HeaderName, &str)]| write_precondition(&headers(pairs));
        assert_eq!(pre(&[]).unwrap(), Precondition::None);
        assert_eq!(
            pre(&[(&header::IF_MATCH, "*")]).unwrap(),
            Precondition::Exists
        );
        assert_eq!(
            pre(&[(&header::IF_MATCH, "\"2\", \"5\"")]).unwrap(),
            Precondition::Matches(vec![Version(2), Version(5)])
        );
        assert_eq!(
            pre(&[(&header::IF_NONE_MATCH, "*")]).unwrap(),
            Precondition::Absent
        );
        assert!(pre(&[(&header::IF_NONE_MATCH, "\"2\"")]).is_err());
        assert!(pre(&[(&header::IF_MATCH, "\"2\""), (&header::IF_NONE_MATCH, "*")]).is_err());
    }

    #[test]
    fn weak_comparison() {
        let t = Tags::List(vec![(Version(3), true)]);
        assert!(t.matches_weakly(Version(3)));
        assert!(!t.matches_weakly(Version(4)));
        assert!(Tags::Any.matches_weakly(Version(9)));
    }
}
