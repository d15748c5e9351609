from tests.plugins.versions import embedded_two_versions


def pytest_generate_tests(metafunc):
    embedded_two_versions(metafunc)
