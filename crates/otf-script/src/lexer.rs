//! The lexer: source text to tokens.
