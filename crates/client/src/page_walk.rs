//! Following a list's `next` links from page to page. The decision of where
//! to go next is kept apart from the requests, so the rules that make every
//! walk end are tested without a server.

use std::collections::HashSet;

use reqwest::Url;

use crate::Error;

/// The most pages one list may take. At the largest page size that is ten
/// million items, far beyond any mesh; a server still handing out pages by
/// then is broken, and the walk stops rather than run on.
pub(crate) const MAX_PAGES: usize = 10_000;

/// The pages fetched so far, to refuse a `next` link that leads back to one.
#[derive(Debug)]
pub(crate) struct PageWalk {
    fetched: HashSet<Url>,
    max_pages: usize,
}

impl PageWalk {
    pub(crate) fn new(max_pages: usize) -> PageWalk {
        PageWalk { fetched: HashSet::new(), max_pages }
    }

    /// Where to go after `url` answered with `next`: `None` when the list is
    /// complete. An empty page ends the walk even if the server offers more;
    /// a link back to a fetched page, or one page too many, is an error, so
    /// a confused server cannot keep the client looping.
    pub(crate) fn next(&mut self, url: &Url, page_was_empty: bool, next: Option<&str>) -> Result<Option<Url>, Error> {
        self.fetched.insert(url.clone());
        let Some(link) = next.filter(|_| !page_was_empty) else {
            return Ok(None);
        };
        let unexpected = |reason: String| Error::UnexpectedAnswer { url: url.to_string(), reason };
        let next = url.join(link).map_err(|e| unexpected(format!("the next page link {link:?} is not a URL: {e}")))?;
        if self.fetched.contains(&next) {
            return Err(unexpected(format!(
                "the next page link {link:?} leads back to a page already fetched, so the list would never end"
            )));
        }
        if self.fetched.len() >= self.max_pages {
            return Err(unexpected(format!("the list did not end after {} pages", self.max_pages)));
        }
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(offset: u32) -> Url {
        Url::parse(&format!("http://127.0.0.1:5681/meshes?size=1&offset={offset}")).unwrap()
    }

    #[test]
    fn follows_next_until_the_last_page() {
        let mut walk = PageWalk::new(MAX_PAGES);
        let second = walk.next(&url(0), false, Some(url(1).as_str())).unwrap();
        assert_eq!(second, Some(url(1)));
        assert_eq!(walk.next(&url(1), false, None).unwrap(), None);
    }

    #[test]
    fn relative_links_are_resolved_and_an_empty_page_ends_the_walk() {
        let mut walk = PageWalk::new(MAX_PAGES);
        assert_eq!(walk.next(&url(0), false, Some("/meshes?size=1&offset=1")).unwrap(), Some(url(1)));
        assert_eq!(walk.next(&url(1), true, Some(url(2).as_str())).unwrap(), None);
    }

    #[test]
    fn a_link_to_the_same_page_or_an_earlier_one_is_refused() {
        let mut walk = PageWalk::new(MAX_PAGES);
        let error = walk.next(&url(0), false, Some(url(0).as_str())).unwrap_err();
        assert!(error.to_string().contains("leads back to a page already fetched"), "{error}");

        let mut walk = PageWalk::new(MAX_PAGES);
        walk.next(&url(0), false, Some(url(1).as_str())).unwrap();
        let error = walk.next(&url(1), false, Some(url(0).as_str())).unwrap_err();
        assert!(matches!(error, Error::UnexpectedAnswer { .. }), "{error}");
    }

    #[test]
    fn the_number_of_pages_is_bounded() {
        let mut walk = PageWalk::new(3);
        walk.next(&url(0), false, Some(url(1).as_str())).unwrap();
        walk.next(&url(1), false, Some(url(2).as_str())).unwrap();
        let error = walk.next(&url(2), false, Some(url(3).as_str())).unwrap_err();
        assert!(error.to_string().contains("did not end after 3 pages"), "{error}");
    }

    #[test]
    fn a_link_that_is_not_a_url_is_refused() {
        let error = PageWalk::new(MAX_PAGES).next(&url(0), false, Some("http://[::1")).unwrap_err();
        assert!(error.to_string().contains("is not a URL"), "{error}");
    }
}
