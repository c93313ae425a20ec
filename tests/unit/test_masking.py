"""Text from outside as it may be logged or shown: URL secrets masked,
webhook URLs shown only up to their first path segment, control characters
shown as escapes, long text cut with a marker, and all of it in time linear
in the input."""

import time

import pytest

from monitor import masking

# -- masking ------------------------------------------------------------------

def test_a_url_password_and_secret_query_values_are_masked():
    assert masking.mask('see https://op:pw@proxy/x?a=1&auth_token=t0k') == (
        'see https://op:***@proxy/x?a=1&auth_token=***')


def seconds_to_mask(text):
    start = time.perf_counter()
    masking.mask(text)
    masking.outside(text)
    return time.perf_counter() - start


@pytest.mark.parametrize('unit', [
    '://',
    'https://u:p@h/?token=',
    '?password=' + 'x' * 10,
    '=',
    '&_=',
    'a' * 63 + '=',
    '\x1b[31m',
    'aB3+',
    'token_',
], ids=['schemes', 'urls', 'secret-values', 'equals', 'names', 'long-names',
        'escapes', 'letters', 'name-letters'])
def test_masking_takes_time_linear_in_the_input(unit):
    # Sizes of a receiver's header or a guest's metadata value. Quadratic
    # work on 130 KB takes minutes; the bound leaves a slow machine room.
    small = unit * (6500 // len(unit) + 1)
    large = unit * (130000 // len(unit) + 1)
    seconds_to_mask(small)  # warm up

    # The best of three: a busy machine only ever adds time.
    small_time = min(seconds_to_mask(small) for _ in range(3))
    large_time = min(seconds_to_mask(large) for _ in range(3))

    assert large_time < 1.0
    # Twenty times the input: linear work takes about twenty times as
    # long, quadratic four hundred times.
    assert large_time < max(small_time * 100, 0.05)


def test_thirty_thousand_schemes_in_a_row_are_masked_at_once():
    start = time.perf_counter()
    masked = masking.mask('://' * 30000 + 'https://u:pw@h')
    assert time.perf_counter() - start < 1.0
    assert masked.endswith('https://u:***@h')


# -- showing outside text -----------------------------------------------------

def test_control_characters_are_shown_as_escapes():
    assert masking.escape('a\nb\rc\td\x1b[2J\x00\x7f\x85\u2028e') == (
        'a\\nb\\rc\\td\\x1b[2J\\x00\\x7f\\x85\\u2028e')


def test_direction_overrides_are_shown_as_escapes():
    assert masking.escape('abc\u202edcb\u2066') == 'abc\\u202edcb\\u2066'


def test_escaping_twice_changes_nothing_more():
    once = masking.escape('a\n\x1b')
    assert masking.escape(once) == once


def test_newlines_may_be_kept_for_a_traceback():
    assert masking.escape('a\nb\x1b', keep_newlines=True) == 'a\nb\\x1b'


def test_text_beyond_the_bound_is_cut_and_says_how_much():
    text = 'x' * 5000

    shown = masking.shorten(text, 1000)

    assert len(shown) <= 1000
    kept = shown.index('...')
    assert shown == 'x' * kept + '...[%d more chars]' % (5000 - kept)


def test_text_within_the_bound_is_left_whole():
    assert masking.shorten('x' * 1000, 1000) == 'x' * 1000


def test_outside_text_is_masked_before_it_is_cut():
    text = 'x' * 990 + ' https://op:s3cret-pw@proxy/' + 'y' * 100

    shown = masking.outside(text)

    assert 's3cret' not in shown
    assert len(shown) <= masking.MAX_PIECE


# -- webhook URLs -------------------------------------------------------------

SLACK = ('https://hooks.slack.com/services/T0A1B2C3D4/B0A1B2C3D4/'
         'aBcDeFgHiJkLmNoPqRsTuVwX')
DISCORD = ('https://discord.com/api/webhooks/112233445566778899/'
           'Zy-XwVuTsRqPoNmLkJiHgFeDcBa0123456789')
TEAMS = ('https://contoso.webhook.office.com/webhookb2/'
         '0f8fad5b-d9cb-469f-a165-70867728950e@72f988bf-86f1-41af-91ab/'
         'IncomingWebhook/6d5e4f3a2b1c/0f8fad5b-d9cb?api-version=1&'
         'sig=Q29udG9zb1NpZ25hdHVyZQ')
AZURE = ('https://acct.blob.core.windows.net/hooks/in?sv=2022-11-02&'
         'se=2030-01-01&sig=c2lnbmF0dXJlLXZhbHVl')


@pytest.mark.parametrize('url, shown, secrets', [
    (SLACK, 'https://hooks.slack.com/services/***',
     ['T0A1B2C3D4', 'aBcDeFgHiJkLmNoPqRsTuVwX']),
    (DISCORD, 'https://discord.com/api/***',
     ['112233445566778899', 'Zy-XwVuTsRqPoNmLkJiHgFeDcBa']),
    (TEAMS, 'https://contoso.webhook.office.com/webhookb2/***'
            '?api-version=***&sig=***',
     ['0f8fad5b', 'Q29udG9zb1NpZ25hdHVyZQ']),
    (AZURE, 'https://acct.blob.core.windows.net/hooks/***?sv=***&se=***'
            '&sig=***', ['c2lnbmF0dXJl', 'in?']),
    ('https://alerts.example:8443/hook?key=k3y-value-long&sig=s1g',
     'https://alerts.example:8443/***?key=***&sig=***', ['k3y', 's1g']),
    ('https://ntfy.example/secret-topic-name',
     'https://ntfy.example/***', ['secret-topic']),
    ('https://user:pa55word@hooks.example/', 'https://hooks.example/',
     ['user', 'pa55word']),
    ('http://[::1]:8080', 'http://[::1]:8080', []),
], ids=['slack', 'discord', 'teams', 'azure-sas', 'query', 'one-segment',
        'userinfo', 'bare'])
def test_a_webhook_url_shows_its_host_and_first_segment_only(url, shown,
                                                             secrets):
    masked = masking.mask_webhook_url(url)

    assert masked == shown
    for secret in secrets:
        assert secret not in masked


@pytest.mark.parametrize('url', [SLACK, DISCORD, TEAMS, AZURE])
def test_what_a_library_quotes_of_a_webhook_url_is_scrubbed(url):
    path_and_query = url.split('/', 3)[3]
    message = ('Max retries exceeded with url: /%s (Caused by '
               'NewConnectionError)' % path_and_query)

    scrubbed = masking.scrub(message, masking.webhook_url_secrets(url))

    assert scrubbed.startswith('Max retries exceeded with url: /')
    assert masking.mask_webhook_url(url).split('/', 3)[3] in scrubbed
    assert path_and_query not in scrubbed
    for part in path_and_query.replace('?', '/').split('/')[1:]:
        if len(part) >= 12:
            assert part not in scrubbed
