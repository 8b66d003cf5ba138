//! Fuzz target: arbitrary bytes as a page content stream, through the lexer, the interpreter
//! (fallback font, no XObjects), layout, and the CMap parser. Must never panic, hang or blow up
//! memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

use paramx_pdf as pdf;

fuzz_target!(|data: &[u8]| {
    let page = pdf::content::interpret_plain(data);
    let _ = pdf::layout::page_lines(&page);
    let _ = pdf::cmap::ToUnicode::parse(data);
});
