"""The journal of lowered agent response timeouts: on disk before
anything is lowered, read back by the next start."""

import json
import os
import stat

from monitor.store import agent_timeouts

UUID = '11111111-1111-4111-8111-111111111111'
LOWERED = agent_timeouts.Lowered('vm-1', -2, True, 2, 7)


def journal(tmp_path):
    return agent_timeouts.AgentTimeoutJournal(
        str(tmp_path / agent_timeouts.FILE_NAME))


def test_a_recorded_entry_is_read_by_the_next_start(tmp_path):
    journal(tmp_path).record(UUID, LOWERED)

    assert journal(tmp_path).entries() == {UUID: LOWERED}


def test_a_forgotten_entry_is_gone_from_the_file_too(tmp_path):
    first = journal(tmp_path)
    first.record(UUID, LOWERED)
    first.forget(UUID)

    assert journal(tmp_path).entries() == {}
    assert json.loads((tmp_path / agent_timeouts.FILE_NAME).read_text()) \
        == {}


def test_the_file_is_private(tmp_path):
    journal(tmp_path).record(UUID, LOWERED)

    mode = os.stat(tmp_path / agent_timeouts.FILE_NAME).st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_an_unreadable_file_starts_empty_and_says_so(tmp_path, caplog):
    (tmp_path / agent_timeouts.FILE_NAME).write_text('{not json')

    assert journal(tmp_path).entries() == {}
    assert 'cannot be restored' in caplog.text


def test_malformed_entries_are_skipped(tmp_path):
    (tmp_path / agent_timeouts.FILE_NAME).write_text(json.dumps({
        UUID: LOWERED._asdict(), 'other': {'name': 'x'}}))

    assert journal(tmp_path).entries() == {UUID: LOWERED}


def test_without_a_path_it_keeps_entries_in_memory(tmp_path):
    memory = agent_timeouts.AgentTimeoutJournal(None)
    memory.record(UUID, LOWERED)

    assert memory.entries() == {UUID: LOWERED}
    assert os.listdir(tmp_path) == []
