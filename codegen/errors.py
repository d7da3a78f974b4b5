"""The one exception the codegen stage raises for anything it refuses or cannot do."""


class CodegenError(ValueError):
    """Code generation, compilation or loading failed; the message is one line."""
