-- epoch: a random id of the sequence of local change numbers (meta seq) that devices follow with
-- changes?since=. Made anew when the database is found to have gone back in time (see epoch.go).
INSERT INTO meta(key, value) VALUES ('epoch', random());
