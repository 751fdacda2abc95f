# Makes `http_mailer` and `fake_email_api` importable from this folder's tests
# (an installed project would not need it).
