# Lab fixtures (real libvirtd guests, real masakari-api) are plain pytest
# plugins in the lab package so the benchmarks and the demo can reuse the
# same code.
pytest_plugins = ['lab.fixtures_guests', 'lab.fixtures_masakari']
