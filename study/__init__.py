"""mistudy: MI-minimising RNN studies (library + service)."""
