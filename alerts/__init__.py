"""Alerts to the office where it already looks: a WeCom (企业微信) group robot, a DingTalk
(钉钉) group robot, or any HTTPS endpoint, signed. Events (a new booking, a complaint, a
reply waiting too long …) become one alert each, delivered to every channel of the company
that takes that event, by the worker, with retries."""
