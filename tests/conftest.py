# Lab fixtures (real libvirtd guests, real masakari-api, the real daemon)
# are plain pytest plugins in the lab package so the benchmarks and the
# demo can reuse the same code.
pytest_plugins = ['lab.fixtures_guests', 'lab.fixtures_masakari',
                  'lab.fixtures_daemon', 'lab.alertmanager']
