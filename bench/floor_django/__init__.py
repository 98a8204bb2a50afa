"""The plain Django floor of `make bench`: what `django-admin startproject` gives, one JSON view.

bench/run.py serves it under gunicorn with authserver's own gunicorn settings and measures it in
the same rounds as authserver's endpoints (scenario `django_floor`): its CPU per request is D,
the unit of the issue-15 targets. bench/floor_wsgi.py is the floor below it (no framework).
"""
