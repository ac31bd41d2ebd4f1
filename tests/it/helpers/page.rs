//! Reading pages: the elements a CSS selector finds, and the text or attribute of the one it
//! must find.

use scraper::{ElementRef, Html, Selector};

pub fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    let selector = Selector::parse(css).unwrap_or_else(|e| panic!("selector {css}: {e:?}"));
    doc.select(&selector).collect()
}

/// The text of the one element `css` selects.
pub fn text_of(doc: &Html, css: &str) -> String {
    let found = select(doc, css);
    assert_eq!(found.len(), 1, "one {css} in {}", doc.html());
    found[0].text().collect()
}

/// An attribute of the one element `css` selects.
pub fn attr_of(doc: &Html, css: &str, attr: &str) -> String {
    let found = select(doc, css);
    assert_eq!(found.len(), 1, "one {css} in {}", doc.html());
    let value = found[0].value().attr(attr);
    value
        .unwrap_or_else(|| panic!("{css} has {attr}"))
        .to_owned()
}
