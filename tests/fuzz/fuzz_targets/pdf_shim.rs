//! The subset of `paramx::pdf` the interpreter needs, compiled from the same source files.
#![allow(dead_code)]

pub const MAX_STREAM_BYTES: usize = 64 << 20;
#[path = "../../../src/pdf/cmap.rs"]
pub mod cmap;
#[path = "../../../src/pdf/content.rs"]
pub mod content;
#[path = "../../../src/pdf/font.rs"]
pub mod font;
#[path = "../../../src/pdf/glyphs.rs"]
pub mod glyphs;
#[path = "../../../src/pdf/layout.rs"]
pub mod layout;
#[path = "../../../src/pdf/lexer.rs"]
pub mod lexer;
