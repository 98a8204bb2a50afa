"""A real (fast) hasher that counts how often it runs, to prove every login path hashes once."""

from __future__ import annotations

from django.contrib.auth.hashers import MD5PasswordHasher


class CountingMD5PasswordHasher(MD5PasswordHasher):
    runs = 0

    def encode(self, password, salt):
        type(self).runs += 1
        return super().encode(password, salt)
