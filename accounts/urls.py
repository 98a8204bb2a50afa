"""The hosted pages, mounted at the site root: /login, /logout and / (signed-in landing)."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.home_page, name="home"),
    path("login", views.login_page, name="login"),
    path("logout", views.logout_page, name="logout"),
]
