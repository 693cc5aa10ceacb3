-- The registrar (contrib/kamailio): phones register to it with the SIP
-- passwords this database already holds, read through this view, so there
-- is one source of truth and no copy to keep in step. A handset's address
-- of record is its extension at its domain's SIP server (the host the
-- phone's config names as registrar); the column names are Kamailio's
-- auth_db defaults (user_column, domain_column, password_column).
CREATE VIEW kamailio_subscriber AS
    SELECT h.extensionnumber AS username, d.sip_server AS domain, h.password AS password
    FROM handset h JOIN domain d ON d.id = h.domain_id
    WHERE d.sip_server <> '';

-- Pushes relayed through the registrar: the NOTIFY goes to registrar_relay
-- (host:port; '' means the domain's SIP server) over registrar_transport,
-- addressed to the phone's address of record.
ALTER TABLE domain ADD COLUMN registrar_relay TEXT NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN registrar_transport TEXT NOT NULL DEFAULT 'udp';

-- What the registrar reports of the phone's registration: its User-Agent
-- and until when the registration holds (Unix ms; 0: not registered).
ALTER TABLE handset_status ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE handset_status ADD COLUMN registered_until INTEGER NOT NULL DEFAULT 0;
