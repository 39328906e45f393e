"""
A reader for the subset of TOML that grading configs use, for Pythons without tomllib
(3.9 and 3.10, e.g. Gradescope's default Ubuntu 22.04 image). grader/config.py uses
tomllib where it exists and this module otherwise; tests/test_config_toml.py checks that
both read the same files alike.

Supported: comments; [table] and [dotted.table] headers; `key = value` with bare or
quoted keys (dotted keys too); values that are basic strings ("..." with the escapes
\\" \\\\ \\n \\t \\r \\b \\f \\uXXXX \\UXXXXXXXX), literal strings ('...'), integers
(with _ separators, sign), floats (decimal, exponent, inf, nan), booleans and arrays of
these (across lines, with a trailing comma). Anything else (inline tables, multi-line
strings, dates) raises TOMLDecodeError naming the line, so a config never reads wrong.
"""
import re


class TOMLDecodeError(ValueError):
    pass


BARE_KEY = re.compile(r'[A-Za-z0-9_-]+')
NUMBER = re.compile(r'[+-]?(?:inf|nan|[0-9][0-9_]*(?:\.[0-9_]+)?(?:[eE][+-]?[0-9_]+)?)')
ESCAPES = {'"': '"', '\\': '\\', 'n': '\n', 't': '\t', 'r': '\r', 'b': '\b', 'f': '\f'}


def load(f):
    """Like tomllib.load: f is a binary file."""
    data = f.read()
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise TOMLDecodeError("the file is not UTF-8") from None
    return loads(text)


def loads(text):
    root, table = {}, None
    table = root
    defined = set()
    parser = _Parser(text)
    while not parser.done():
        parser.skip_blank()
        if parser.done():
            break
        line = parser.line
        if parser.peek() == '[':
            parser.advance()
            if parser.peek() == '[':
                raise parser.error("arrays of tables ([[...]]) are not supported")
            keys = parser.key()
            parser.skip_space()
            parser.expect(']')
            parser.end_of_line()
            if tuple(keys) in defined:
                raise TOMLDecodeError(f"line {line}: table [{'.'.join(keys)}] defined twice")
            defined.add(tuple(keys))
            table = root
            for key in keys:
                table = table.setdefault(key, {})
                if not isinstance(table, dict):
                    raise TOMLDecodeError(f"line {line}: {key} is not a table")
            continue
        keys = parser.key()
        parser.skip_space()
        parser.expect('=')
        parser.skip_space()
        value = parser.value()
        parser.end_of_line()
        target = table
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise TOMLDecodeError(f"line {line}: {key} is not a table")
        if keys[-1] in target:
            raise TOMLDecodeError(f"line {line}: key {'.'.join(keys)} defined twice")
        target[keys[-1]] = value
    return root


class _Parser:
    def __init__(self, text):
        self.text, self.at, self.line = text, 0, 1

    def done(self):
        return self.at >= len(self.text)

    def peek(self):
        return self.text[self.at] if self.at < len(self.text) else ''

    def advance(self, count=1):
        self.line += self.text.count('\n', self.at, self.at + count)
        self.at += count

    def error(self, message):
        return TOMLDecodeError(f"line {self.line}: {message}")

    def expect(self, char):
        if self.peek() != char:
            raise self.error(f"expected {char!r}, found {self.peek() or 'the end'!r}")
        self.advance()

    def skip_space(self):
        while self.peek() in (' ', '\t'):
            self.advance()

    def skip_comment(self):
        if self.peek() == '#':
            while self.peek() not in ('\n', ''):
                self.advance()

    def skip_blank(self):
        """Spaces, comments and newlines."""
        while True:
            self.skip_space()
            self.skip_comment()
            if self.peek() in ('\n', '\r'):
                self.advance()
            else:
                return

    def end_of_line(self):
        self.skip_space()
        self.skip_comment()
        if self.peek() == '\r':
            self.advance()
        if self.peek() not in ('\n', ''):
            raise self.error(f"unexpected {self.peek()!r} after the value")

    def key(self):
        keys = []
        while True:
            self.skip_space()
            char = self.peek()
            if char == '"':
                keys.append(self.basic_string())
            elif char == "'":
                keys.append(self.literal_string())
            else:
                match = BARE_KEY.match(self.text, self.at)
                if not match:
                    raise self.error(f"expected a key, found {char or 'the end'!r}")
                keys.append(match.group())
                self.advance(match.end() - self.at)
            self.skip_space()
            if self.peek() != '.':
                return keys
            self.advance()

    def value(self):
        char = self.peek()
        if char == '"':
            if self.text.startswith('"""', self.at):
                raise self.error("multi-line strings are not supported")
            return self.basic_string()
        if char == "'":
            if self.text.startswith("'''", self.at):
                raise self.error("multi-line strings are not supported")
            return self.literal_string()
        if char == '[':
            return self.array()
        if char == '{':
            raise self.error("inline tables are not supported")
        for word, value in (('true', True), ('false', False)):
            if self.text.startswith(word, self.at):
                self.advance(len(word))
                return value
        match = NUMBER.match(self.text, self.at)
        if not match:
            raise self.error(f"invalid value starting with {char or 'the end'!r}")
        token = match.group()
        self.advance(len(token))
        if self.peek() not in (' ', '\t', '\n', '\r', '#', ',', ']', ''):
            raise self.error(f"invalid value {token + self.peek()!r}...")
        digits = token.replace('_', '')
        if token.lstrip('+-') in ('inf', 'nan') or any(c in digits for c in '.eE'):
            return float(digits)
        return int(digits)

    def basic_string(self):
        self.expect('"')
        out = []
        while True:
            char = self.peek()
            if char in ('', '\n'):
                raise self.error("unterminated string")
            self.advance()
            if char == '"':
                return ''.join(out)
            if char != '\\':
                out.append(char)
                continue
            escape = self.peek()
            self.advance()
            if escape in ESCAPES:
                out.append(ESCAPES[escape])
            elif escape in ('u', 'U'):
                size = 4 if escape == 'u' else 8
                digits = self.text[self.at:self.at + size]
                if len(digits) != size or not all(c in '0123456789abcdefABCDEF' for c in digits):
                    raise self.error(f"invalid \\{escape} escape")
                out.append(chr(int(digits, 16)))
                self.advance(size)
            else:
                raise self.error(f"invalid escape \\{escape}")

    def literal_string(self):
        self.expect("'")
        end = self.text.find("'", self.at)
        newline = self.text.find('\n', self.at)
        if end < 0 or (0 <= newline < end):
            raise self.error("unterminated string")
        value = self.text[self.at:end]
        self.advance(end + 1 - self.at)
        return value

    def array(self):
        self.expect('[')
        items = []
        while True:
            self.skip_blank()
            if self.peek() == ']':
                self.advance()
                return items
            items.append(self.value())
            self.skip_blank()
            if self.peek() == ',':
                self.advance()
            elif self.peek() != ']':
                raise self.error(f"expected ',' or ']' in an array, found {self.peek() or 'the end'!r}")
