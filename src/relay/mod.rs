//! The bundled relay (issue 2).
