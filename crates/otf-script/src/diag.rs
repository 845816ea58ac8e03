//! Diagnostics: source files, spans to line:col, and rendering errors as rustc does.
