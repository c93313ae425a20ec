"""Masking secrets in text that may reach a log line, the outbox or a
terminal: the one place that knows what a secret looks like.

``mask`` works in one pass over its input, whatever the input holds: log
records are masked in the eventlet hub, so a pattern that backtracks over
a long value (a receiver's 60 KB header, a guest's metadata) would stall
every green thread.
"""

MASK = '***'

# Query parameters whose value is a secret: their name contains one of these.
_SECRET_WORDS = ('password', 'passwd', 'secret', 'token')
# Where the authority of a URL (user:password@host) ends.
_AUTHORITY_END = frozenset('/?#\'" \t\r\n\f\v<>')
# Where a query value ends.
_VALUE_END = frozenset('&;#\'" \t\r\n\f\v<>')
# Longest query parameter name looked at: real names are short, and a
# bound keeps the scan linear.
_MAX_NAME = 64


def mask(text):
    """``text`` with every URL password and secret query value masked.

    ``https://user:pass@host/v1`` becomes ``https://user:***@host/v1``;
    ``?password=x`` or ``&auth_token=x`` become ``?password=***``.
    Anything else is returned as it was. Not a string: ``str()`` of it.
    """
    if not text:
        return text
    text = str(text)
    if '://' in text:
        text = _mask_userinfo(text)
    if '=' in text:
        text = _mask_query_values(text)
    return text


def _mask_userinfo(text):
    out = []
    pos = 0
    start = text.find('://')
    while start != -1:
        authority = start + 3
        end = authority
        # The authority ends at the first delimiter; the scan never goes
        # back, and the next URL is looked for after it.
        while end < len(text) and text[end] not in _AUTHORITY_END:
            end += 1
        at = text.rfind('@', authority, end)
        if at != -1:
            colon = text.find(':', authority, at)
            if colon != -1:
                out.append(text[pos:colon + 1])
                out.append(MASK)
                pos = at
        start = text.find('://', max(end, authority))
    out.append(text[pos:])
    return ''.join(out)


def _mask_query_values(text):
    out = []
    pos = 0
    index = 0
    length = len(text)
    while index < length:
        equals = text.find('=', index)
        if equals == -1:
            break
        # The parameter name: letters and underscores just before '='.
        name_start = equals
        while (name_start > index and equals - name_start < _MAX_NAME
               and (text[name_start - 1].isalpha()
                    or text[name_start - 1] == '_')):
            name_start -= 1
        name = text[name_start:equals].lower()
        value_end = equals + 1
        if (name and name_start > 0 and text[name_start - 1] in '?&;'
                and any(word in name for word in _SECRET_WORDS)):
            while value_end < length and text[value_end] not in _VALUE_END:
                value_end += 1
            out.append(text[pos:equals + 1])
            out.append(MASK)
            pos = value_end
        index = value_end
    out.append(text[pos:])
    return ''.join(out)
