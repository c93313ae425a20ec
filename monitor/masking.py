"""Making text from outside (receivers, guests, metadata, URLs) fit for a
log line, the outbox or a terminal: the one place that knows what a secret
looks like, and how outside text is shown.

* ``mask`` hides URL passwords and secret query values;
  ``mask_webhook_url`` hides everything of a webhook URL past its host
  (chat services put the token in the path).
* ``escape`` shows control characters as visible escapes (``\\n``,
  ``\\x1b``), so outside text can neither forge a log line nor drive a
  terminal.
* ``outside`` does both and cuts the text to ``MAX_PIECE`` characters,
  saying how much was cut.

Every function works in one pass over its input, whatever the input holds:
log records are masked in the eventlet hub, so a pattern that backtracks
over a long value (a receiver's 60 KB header, a guest's metadata) would
stall every green thread.
"""

import urllib.parse

MASK = '***'

# Longest piece of outside text (a receiver's answer, a header, a metadata
# value) shown in one log line, after escaping.
MAX_PIECE = 1000
# Longest log line (a record with a traceback: each of its lines).
MAX_LINE = 4096
# Ends a text that was cut short.
_CUT = '...[%d more chars]'


def _escape_table():
    table = {}
    named = {'\n': '\\n', '\r': '\\r', '\t': '\\t'}
    # C0, DEL and C1 controls, the characters some readers take for a line
    # break, and the direction overrides that make a terminal show text in
    # another order than it is.
    codes = (list(range(0x20)) + list(range(0x7f, 0xa0))
             + [0x200e, 0x200f, 0x2028, 0x2029] + list(range(0x202a, 0x202f))
             + list(range(0x2066, 0x206a)))
    for code in codes:
        char = chr(code)
        if char in named:
            table[code] = named[char]
        elif code < 0x100:
            table[code] = '\\x%02x' % code
        else:
            table[code] = '\\u%04x' % code
    return table


_ESCAPES = _escape_table()
_ESCAPES_KEEP_NEWLINE = {code: text for code, text in _ESCAPES.items()
                         if code != ord('\n')}

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


def escape(text, keep_newlines=False):
    """``text`` with every control character shown as an escape:
    ``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\u2028``.

    ``keep_newlines``: line feeds stay (a traceback's lines).
    """
    return str(text).translate(
        _ESCAPES_KEEP_NEWLINE if keep_newlines else _ESCAPES)


def shorten(text, limit=MAX_PIECE):
    """``text`` in at most ``limit`` characters: when longer, its start
    and a marker saying how many characters were cut."""
    if len(text) <= limit:
        return text
    # The marker's length with the most digits it can need.
    keep = max(limit - len(_CUT % len(text)), 0)
    return text[:keep] + _CUT % (len(text) - keep)


def outside(text, limit=MAX_PIECE):
    """Outside text as it may be shown: masked, escaped, in at most
    ``limit`` characters (a marker included when it was cut)."""
    # Masked whole: a URL password cut in two would no longer be found.
    return shorten(escape(mask(text) or ''), limit)


def mask_webhook_url(url):
    """A webhook URL as it may be logged: ``scheme://host[:port]``, the
    first path segment, and nothing else of it readable.

    Chat services put the secret in the path
    (``https://hooks.slack.com/services/T000/B000/XXXX``,
    ``https://discord.com/api/webhooks/ID/TOKEN``) or in query values
    (``?sig=``, ``?code=``): every later path segment and every query value
    becomes ``***``; query names stay. The user and password are dropped.
    """
    if not url:
        return url
    try:
        parts = urllib.parse.urlsplit(str(url))
        host = parts.hostname or ''
        port = parts.port
    except ValueError:
        return MASK
    if ':' in host:
        host = '[%s]' % host
    shown = '%s://%s' % (parts.scheme, host)
    if port is not None:
        shown += ':%d' % port
    segments = parts.path.split('/')[1:]
    if parts.path in ('', '/'):
        shown += parts.path
    elif len(segments) > 1 and segments[0]:
        # "services", "api", "webhookb2": says which service, no secret.
        shown += '/%s/%s' % (outside(segments[0], 64), MASK)
    else:
        shown += '/' + MASK
    if parts.query:
        names = [pair.partition('=')[0] for pair in
                 parts.query.replace(';', '&').split('&')]
        shown += '?' + '&'.join('%s=%s' % (outside(name, 64), MASK)
                                for name in names)
    if parts.fragment:
        shown += '#' + MASK
    return escape(shown)


# Shorter parts of a webhook URL ("1", "yes", "webhooks") are no secret and
# would turn up in every line; tokens are longer.
_MIN_SECRET = 12


def webhook_url_secrets(url):
    """The parts of a webhook URL that ``mask_webhook_url`` hides, longest
    first, with what shows instead: to scrub them from text a library
    wrote (its error messages name the path and query)."""
    try:
        parts = urllib.parse.urlsplit(str(url))
    except ValueError:
        return [(str(url), MASK)]
    found = [(str(url), mask_webhook_url(url))]
    if parts.password:
        found.append((parts.password, MASK))
    shown_path = mask_webhook_url('x://h' + parts.path)[len('x://h'):]
    if parts.query:
        found.append(('%s?%s' % (parts.path, parts.query), shown_path
                      + mask_webhook_url('x://h?' + parts.query)[
                          len('x://h'):]))
        for pair in parts.query.replace(';', '&').split('&'):
            value = pair.partition('=')[2]
            if len(value) >= _MIN_SECRET:
                found.append((value, MASK))
    if shown_path != parts.path:
        found.append((parts.path, shown_path))
        # The hidden segments, alone and together, as some messages show
        # them.
        hidden = parts.path.split('/')[1:]
        if shown_path.count('/') > 1:
            hidden = hidden[1:]
        found.extend((text, MASK) for text in ['/'.join(hidden)] + hidden
                     if len(text) >= _MIN_SECRET)
    found = found[:1] + [pair for pair in found[1:]
                         if len(pair[0]) >= _MIN_SECRET]
    return sorted(found, key=lambda pair: len(pair[0]), reverse=True)


# Secrets of the running configuration that ``mask`` cannot recognise (a
# webhook URL's path), with what shows instead; the log scrubs them from
# every line, whoever wrote it (urllib3 logs the path it POSTs to).
_KNOWN_SECRETS = []


def add_known_secrets(secrets):
    """Scrub ``[(secret, shown)]`` from every log line from now on."""
    for pair in secrets:
        if len(pair[0]) >= 4 and pair not in _KNOWN_SECRETS:
            _KNOWN_SECRETS.append(pair)
    _KNOWN_SECRETS.sort(key=lambda pair: len(pair[0]), reverse=True)


def known_secrets():
    """What ``add_known_secrets`` was given, longest first."""
    return list(_KNOWN_SECRETS)


def scrub(text, secrets):
    """``text`` with each secret of ``[(secret, shown)]`` replaced."""
    if not text:
        return text
    for secret, shown in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, shown)
    return text
