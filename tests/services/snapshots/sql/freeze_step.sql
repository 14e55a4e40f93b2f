SELECT count(*) AS count_1, max("window".id) AS max_1
FROM (SELECT members.id AS id
FROM members
WHERE members.id > %(id_1)s::BIGINT ORDER BY members.id
 LIMIT %(param_1)s::INTEGER) AS "window";

INSERT INTO deliveries (campaign_id, member_id, email, language, local, batch_no, status, attempts, queued_at, updated_at) SELECT %(param_1)s::INTEGER AS anon_1, eligible.member_id, eligible.email, eligible.language, eligible.local, CAST(CASE WHEN (eligible.language = %(language_1)s::VARCHAR) THEN %(param_2)s::INTEGER WHEN (eligible.language = %(language_2)s::VARCHAR) THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END * %(param_5)s::INTEGER + (row_number() OVER (PARTITION BY eligible.language ORDER BY eligible.member_id) - %(param_6)s::INTEGER) / %(param_7)s::INTEGER AS INTEGER) AS anon_2, %(param_8)s::VARCHAR AS anon_3, %(param_9)s::INTEGER AS anon_4, %(param_10)s::TIMESTAMP WITH TIME ZONE AS anon_5, %(param_11)s::TIMESTAMP WITH TIME ZONE AS anon_6
FROM (SELECT members.id AS member_id, members.email AS email, CASE WHEN (members.language IN (%(language_3_1)s::VARCHAR, %(language_3_2)s::VARCHAR)) THEN members.language ELSE %(param_12)s::VARCHAR END AS language, members.local AS local
FROM members
WHERE (EXISTS (SELECT %(param_13)s::INTEGER AS anon_7
FROM subscriptions
WHERE subscriptions.member_id = members.id AND subscriptions.list_id + %(list_id_1)s::INTEGER IN (%(param_14_1)s::INTEGER) AND subscriptions.status = %(status_1)s::VARCHAR
 LIMIT ALL OFFSET %(param_15)s::INTEGER)) AND NOT (EXISTS (SELECT *
FROM suppressions
WHERE suppressions.email = members.email)) AND (members.consent_basis = %(consent_basis_1)s::VARCHAR OR members.consent_basis = %(consent_basis_2)s::VARCHAR AND members.consent_expires_at IS NULL OR members.consent_basis IS NOT NULL AND members.consent_expires_at > %(consent_expires_at_1)s::TIMESTAMP WITH TIME ZONE) AND members.id > %(id_1)s::BIGINT AND members.id <= %(id_2)s::BIGINT AND members.id > (SELECT coalesce(max(deliveries.member_id), %(coalesce_2)s::INTEGER) AS coalesce_1
FROM deliveries
WHERE deliveries.campaign_id = %(campaign_id_1)s::INTEGER)) AS eligible;

INSERT INTO send_batches (campaign_id, batch_no, language, size, status, attempts, resends) SELECT deliveries.campaign_id, deliveries.batch_no, min(deliveries.language) AS min_1, count(*) AS count_1, %(param_1)s::VARCHAR AS anon_1, %(param_2)s::INTEGER AS anon_2, %(param_3)s::INTEGER AS anon_3
FROM deliveries
WHERE deliveries.campaign_id = %(campaign_id_1)s::INTEGER GROUP BY deliveries.campaign_id, deliveries.batch_no ON CONFLICT (campaign_id, batch_no) DO NOTHING RETURNING send_batches.batch_no;

INSERT INTO campaign_stats (campaign_id, targeted, sent, failed, delivered, bounced, dropped, deferred, opens_total, opens_unique, opens_human_unique, machine_opens, clicks_total, clicks_unique, clicks_human_unique, machine_clicks, petition_clicks_total, petition_clicks_unique, petition_clicks_human_unique, unsubscribes, spam_reports, updated_at) VALUES (%(p_campaign)s::INTEGER, %(p_targeted)s::BIGINT, %(sent)s::BIGINT, %(failed)s::BIGINT, %(delivered)s::BIGINT, %(bounced)s::BIGINT, %(dropped)s::BIGINT, %(deferred)s::BIGINT, %(opens_total)s::BIGINT, %(opens_unique)s::BIGINT, %(opens_human_unique)s::BIGINT, %(machine_opens)s::BIGINT, %(clicks_total)s::BIGINT, %(clicks_unique)s::BIGINT, %(clicks_human_unique)s::BIGINT, %(machine_clicks)s::BIGINT, %(petition_clicks_total)s::BIGINT, %(petition_clicks_unique)s::BIGINT, %(petition_clicks_human_unique)s::BIGINT, %(unsubscribes)s::BIGINT, %(spam_reports)s::BIGINT, %(p_now)s::TIMESTAMP WITH TIME ZONE) ON CONFLICT (campaign_id) DO UPDATE SET targeted = (campaign_stats.targeted + excluded.targeted), updated_at = excluded.updated_at;
