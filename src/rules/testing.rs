//! Rule test files (`kamwatch test`).
