package main

// The time zone database, built in: a container image, and a Windows or minimal Linux
// machine, may have none, and the shop's time zone (TZ) must still hold for the schedules that
// read the local time (backups, media.large_file_window, orders of the day).
import _ "time/tzdata"
