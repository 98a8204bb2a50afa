from django.urls import path

from webapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login", views.login, name="login"),
    path("callback", views.callback, name="callback"),
    path("logout", views.logout, name="logout"),
]
