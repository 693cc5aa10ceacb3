-- Where an unknown device asked from, as a network (an IPv4 /24, an IPv6
-- /64): when the unknown-device list is full, the sources holding the most
-- entries give them up first, so a scan from many addresses cannot push a
-- real booting phone off the list. Earlier rows count by their address.
ALTER TABLE device ADD COLUMN source TEXT NOT NULL DEFAULT '';
UPDATE device SET source = ip;
