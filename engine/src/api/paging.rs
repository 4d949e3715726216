//! Paging of list routes: `?limit=N&after=KEY`, answered with `next_after` (the `after` of the next
//! page, null on the last). Lists are in key order; a page holds the items whose key sorts after
//! `after`, so an item deleted between two requests never shifts the next page.

use super::error::ApiError;
use super::form_pairs;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most items per page; a larger `limit` is lowered to it.
pub const MAX_LIMIT: usize = 1000;

/// `after` and `limit` of a list request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageQuery {
    /// Start after this key.
    pub after: Option<String>,
    /// Items per page (1 to [`MAX_LIMIT`]; more is lowered to it).
    pub limit: usize,
}

impl PageQuery {
    /// Reads `after` and `limit` from a query string (other parameters are left to the route).
    pub fn parse(query: Option<&str>) -> Result<PageQuery, ApiError> {
        let mut page = PageQuery {
            after: None,
            limit: DEFAULT_LIMIT,
        };
        for (key, value) in form_pairs(query.unwrap_or("")) {
            match key.as_str() {
                "after" => page.after = Some(value),
                "limit" => {
                    page.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .map(|n| n.min(MAX_LIMIT))
                        .ok_or_else(|| {
                            ApiError::field(
                                "limit",
                                format!("limit {value:?}: expected a positive number (at most {MAX_LIMIT} per page)"),
                            )
                        })?;
                }
                _ => {}
            }
        }
        Ok(page)
    }

    /// The page of `items` (sorted here by `key`) and the `next_after` of the next one.
    pub fn apply<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let mut keyed: Vec<(String, T)> = items
            .into_iter()
            .map(|item| (key(&item), item))
            .filter(|(k, _)| self.after.as_ref().is_none_or(|after| k > after))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let next_after = (keyed.len() > self.limit).then(|| keyed[self.limit - 1].0.clone());
        keyed.truncate(self.limit);
        (keyed.into_iter().map(|(_, item)| item).collect(), next_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_key_order_and_refuse_bad_limits() {
        let query = |q: &str| PageQuery::parse(Some(q));
        assert_eq!(query("").ok().map(|p| p.limit), Some(DEFAULT_LIMIT));
        assert_eq!(query("limit=5000").ok().map(|p| p.limit), Some(MAX_LIMIT));
        for bad in ["limit=0", "limit=-1", "limit=x"] {
            assert_eq!(
                query(bad).err().and_then(|e| e.field).as_deref(),
                Some("limit"),
                "{bad}"
            );
        }
        let items = vec!["c", "a", "d", "b"];
        let first = query("limit=2")
            .ok()
            .map(|p| p.apply(items.clone(), |s| s.to_string()));
        assert_eq!(first, Some((vec!["a", "b"], Some("b".to_string()))));
        let last = query("limit=2&after=b")
            .ok()
            .map(|p| p.apply(items.clone(), |s| s.to_string()));
        assert_eq!(last, Some((vec!["c", "d"], None)));
        let gone = query("after=bb").ok().map(|p| p.apply(items, |s| s.to_string()));
        assert_eq!(gone, Some((vec!["c", "d"], None)), "a deleted key still pages on");
    }
}
