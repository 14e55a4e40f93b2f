INSERT INTO deliveries (campaign_id, member_id, email, language, local, batch_no, status, attempts, queued_at, updated_at) SELECT %(param_1)s::INTEGER AS anon_1, eligible.member_id, eligible.email, eligible.language, eligible.local, CAST(CASE WHEN (eligible.language = %(language_1)s::VARCHAR) THEN %(param_2)s::INTEGER WHEN (eligible.language = %(language_2)s::VARCHAR) THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END * %(param_5)s::INTEGER + (row_number() OVER (PARTITION BY eligible.language ORDER BY eligible.member_id) - %(param_6)s::INTEGER) / %(param_7)s::INTEGER AS INTEGER) AS anon_2, %(param_8)s::VARCHAR AS anon_3, %(param_9)s::INTEGER AS anon_4, %(param_10)s::TIMESTAMP WITH TIME ZONE AS anon_5, %(param_11)s::TIMESTAMP WITH TIME ZONE AS anon_6
FROM (SELECT members.id AS member_id, members.email AS email, CASE WHEN (members.language IN (%(language_3_1)s::VARCHAR, %(language_3_2)s::VARCHAR)) THEN members.language ELSE %(param_12)s::VARCHAR END AS language, members.local AS local
FROM members
WHERE (EXISTS (SELECT *
FROM subscriptions
WHERE subscriptions.member_id = members.id AND subscriptions.list_id IN (%(list_id_1_1)s::INTEGER) AND subscriptions.status = %(status_1)s::VARCHAR)) AND NOT (EXISTS (SELECT *
FROM suppressions
WHERE suppressions.email = members.email)) AND (members.consent_basis = %(consent_basis_1)s::VARCHAR OR members.consent_basis = %(consent_basis_2)s::VARCHAR AND members.consent_expires_at IS NULL OR members.consent_basis IS NOT NULL AND members.consent_expires_at > %(consent_expires_at_1)s::TIMESTAMP WITH TIME ZONE)) AS eligible
WHERE true ON CONFLICT (campaign_id, member_id) DO NOTHING;
