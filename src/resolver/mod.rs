//! The manual redirect resolver (issue 3).
